# The flake: the nixrun package (default.nix) for Linux systems, and the NixOS
# module (nix/module.nix) that runs containers.<name> with nixrun.
#
#   nix build .#nixrun
#   nixosConfigurations.host = nixpkgs.lib.nixosSystem {
#     modules = [ nixrun.nixosModules.default { virtualisation.nixrun.enable = true; } ];
#   };
{
  description = "nixrun: boots NixOS-style systemd guests; a drop-in for systemd-nspawn behind container@.service";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      # nixrun is Linux-only (namespaces, cgroup2, seccomp); these two are
      # the architectures it has seccomp tables for.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forEachSystem = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forEachSystem (pkgs: {
        nixrun = pkgs.callPackage ./default.nix { };
        default = self.packages.${pkgs.stdenv.hostPlatform.system}.nixrun;
      });

      # The module's default package is built with the host's own nixpkgs
      # (pkgs.callPackage ./default.nix), so it follows the host's Rust and
      # glibc rather than this flake's pin.
      nixosModules.nixrun = ./nix/module.nix;
      nixosModules.default = self.nixosModules.nixrun;
    };
}
