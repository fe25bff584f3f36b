# The nixrun package, for callPackage (the flake and nix/module.nix use it):
# nixrun and nixrunctl, the nixrun@.service template with its start script,
# man pages and shell completions.
{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
}:

let
  manifest = lib.importTOML ./Cargo.toml;
in
rustPlatform.buildRustPackage {
  pname = "nixrun";
  inherit (manifest.package) version;

  # A checkout's target/ holds gigabytes of build output that must not be
  # copied into the store.
  src = lib.cleanSourceWith {
    src = lib.cleanSource ./.;
    filter = path: type: !(type == "directory" && baseNameOf path == "target");
  };

  cargoLock.lockFile = ./Cargo.lock;

  # .cargo/config.toml links statically against glibc (for a smaller resident
  # supervisor on distributions) and names the x86_64 target so that the flag
  # stays off proc-macros. Under Nix a static glibc would need glibc.static
  # and the target would be wrong on aarch64, so the file goes: this is an
  # ordinary dynamic build for the platform rustPlatform targets (its hooks
  # pass --target themselves). nixrun uses neither NSS nor dlopen, so the
  # static build buys memory only.
  postPatch = ''
    rm .cargo/config.toml
  '';

  # nixrun-gendoc writes the completions and man pages below; it is a
  # workspace member, not part of the nixrun package.
  cargoBuildFlags = [
    "--package"
    "nixrun"
    "--package"
    "nixrun-gendoc"
  ];

  # The unit tests only: the integration tests start real containers as root,
  # which the build sandbox does not allow.
  cargoTestFlags = [
    "--package"
    "nixrun"
    "--lib"
  ];

  nativeBuildInputs = [ installShellFiles ];

  postInstall = ''
    install -Dm755 packaging/nixrun-container-start $out/lib/nixrun/nixrun-container-start
    install -Dm755 packaging/nixrun-container-init $out/lib/nixrun/nixrun-container-init
    install -Dm644 packaging/nixrun@.service $out/lib/systemd/system/nixrun@.service
    substituteInPlace $out/lib/systemd/system/nixrun@.service \
      --replace-fail /usr/lib/nixrun/ $out/lib/nixrun/ \
      --replace-fail /usr/bin/ $out/bin/
    install -Dm644 packaging/example.conf packaging/README.md -t $out/share/doc/nixrun
  ''
  # Generating runs a binary just built: not when cross-compiling.
  + lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    $out/bin/nixrun-gendoc gendoc
    installManPage gendoc/man1/*.1
    for cmd in nixrun nixrunctl; do
      installShellCompletion --cmd $cmd \
        --bash gendoc/bash/$cmd \
        --zsh gendoc/zsh/_$cmd \
        --fish gendoc/fish/$cmd.fish
    done
  ''
  + ''
    rm $out/bin/nixrun-gendoc
  '';

  meta = {
    description = manifest.package.description;
    license = [
      lib.licenses.mit
      lib.licenses.asl20
    ];
    mainProgram = "nixrun";
    platforms = lib.platforms.linux;
  };
}
