# NixOS module: `virtualisation.nixrun.enable = true;` runs NixOS's containers
# (`containers.<name>`, and imperative ones through the `container@` template)
# with nixrun instead of systemd-nspawn. Everything else of NixOS's container
# units stays: the conf in /etc/nixos-containers, preStart/postStart, Slice,
# Delegate, KillMode, DeviceAllow, restart on exit 133, autoStart.
#
# How: the units' ExecStart becomes nixrun's start script
# (packaging/nixrun-container-start), which reads the same conf fields as
# NixOS's script and execs nixrun with the command line NixOS would give
# nspawn. Not a `systemd-nspawn` shim in the unit's PATH: NixOS's script
# execs nspawn by its store path (${config.systemd.package}/bin/systemd-nspawn),
# so PATH is never consulted; a shim bound over that path (BindReadOnlyPaths=)
# would put every container unit in a mount namespace of its own and still
# hand nixrun flags it must not get (NixOS always passes --private-users=no,
# which nixrun's parser refuses; "no" is what nixrun does anyway). Owning the
# script instead means one start script for NixOS and for nixrun@.service,
# tested in this repository (integration/packaging.rs). What it costs: the
# options NixOS bakes into its script rather than the conf are read here and
# passed to the script as flags (flagsFor), and NixOS's container-init and
# postStart are replaced: nixrun configures the veth's addresses on both
# sides before the guest's init runs (NixOS's postStart did the host side
# only after the guest had booted), so what remains of them must not fail
# on addresses already there (packaging/nixrun-container-init).
{
  config,
  lib,
  pkgs,
  ...
}:

let
  cfg = config.virtualisation.nixrun;

  startScript = "${cfg.package}/lib/nixrun/nixrun-container-start";

  # The same flags, at the same place, as NixOS's script gives nspawn for these
  # options.
  flagsFor =
    c:
    let
      caps = c.additionalCapabilities ++ lib.optional c.enableTun "CAP_NET_ADMIN";
    in
    lib.optional c.ephemeral "--ephemeral"
    ++ lib.optional (caps != [ ]) "--capability=${lib.concatStringsSep "," caps}"
    ++ map (t: "--tmpfs=${t}") c.tmpfs
    ++ map (v: "--network-veth-extra=${v}") (lib.attrNames c.extraVeths);

  # A wrapper script rather than arguments on the ExecStart line: shell quoting
  # is what escapeShellArgs produces; systemd's line would also expand % and $.
  execStart =
    name: flags:
    if flags == [ ] then
      startScript
    else
      "${pkgs.writeShellScript "nixrun-container-${name}-start" ''
        exec ${startScript} ${lib.escapeShellArgs flags}
      ''}";

  arg = lib.escapeShellArg;

  # Inside the guest, before NixOS's stage 2: what NixOS's container-init
  # does for the extra veths (it bakes them in per container), with replace
  # instead of add, then the shipped init for eth0. ip(8) as NixOS's has it.
  extraVethInside =
    name: v:
    ''
      ip link set dev ${arg name} up
    ''
    + lib.optionalString (v.localAddress != null) ''
      ip addr replace ${arg v.localAddress} dev ${arg name}
    ''
    + lib.optionalString (v.localAddress6 != null) ''
      ip -6 addr replace ${arg v.localAddress6} dev ${arg name} nodad
    ''
    + lib.optionalString (v.hostAddress != null) ''
      ip route replace ${arg v.hostAddress} dev ${arg name}
    ''
    + lib.optionalString (v.hostAddress6 != null) ''
      ip -6 route replace ${arg v.hostAddress6} dev ${arg name}
    '';

  containerInit =
    name: extraVeths:
    pkgs.writeShellScript "nixrun-container-${name}-init" ''
      set -eu
      export PATH=${pkgs.iproute2}/bin''${PATH:+:$PATH}
      ${lib.concatStrings (lib.mapAttrsToList extraVethInside extraVeths)}
      exec ${pkgs.runtimeShell} ${cfg.package}/lib/nixrun/nixrun-container-init "$@"
    '';

  # NixOS's postStart, less what nixrun did before the guest's init (the
  # main veth's host side): the extra veths' host sides, idempotent.
  extraVethHost =
    name: v:
    if v.hostBridge != null then
      ''
        ip link set dev ${arg name} master ${arg v.hostBridge} up
      ''
    else
      ''
        ip link set dev ${arg name} up
      ''
      + lib.optionalString (v.hostAddress != null) ''
        ip addr replace ${arg v.hostAddress} dev ${arg name}
      ''
      + lib.optionalString (v.hostAddress6 != null) ''
        ip -6 addr replace ${arg v.hostAddress6} dev ${arg name} nodad
      ''
      + lib.optionalString (v.localAddress != null) ''
        ip route replace ${arg v.localAddress} dev ${arg name}
      ''
      + lib.optionalString (v.localAddress6 != null) ''
        ip -6 route replace ${arg v.localAddress6} dev ${arg name}
      '';

  override = name: flags: extraVeths: {
    postStart = lib.mkForce (lib.concatStrings (lib.mapAttrsToList extraVethHost extraVeths));
    serviceConfig = {
      ExecStart = lib.mkForce (execStart name flags);
      # NixOS's reload finds the guest through machined (nixos-container run
      # asks machinectl for its leader); nixrunctl finds it through nixrun's
      # own state, so a reload works with or without a registration. NixOS
      # switches to ${SYSTEM_PATH:-<profile>}; nixrunctl gets this unit's
      # environment, the conf re-read, so SYSTEM_PATH is there for it.
      ExecReload = lib.mkForce "${cfg.package}/bin/nixrunctl reload %i";
    };
    environment = {
      NIXRUN = "${cfg.package}/bin/nixrun";
      # For FLAKE= containers' first start, as NixOS's script runs it; this is
      # the one NixOS installs, configured with its state directories.
      NIXOS_CONTAINER = "/run/current-system/sw/bin/nixos-container";
      NIXRUN_CONTAINER_INIT = "${containerInit name extraVeths}";
    };
  };

  # Container options whose nspawn flags nixrun refuses ("not supported yet"):
  # said at evaluation, not only when the unit fails to start.
  # None today: privateUsers is supported (--private-users= with :idmap on the
  # /nix binds), and so is ephemeral (--ephemeral: an overlay over the root).
  unsupported = _c: [ ];
in
{
  options.virtualisation.nixrun = {
    enable = lib.mkEnableOption "running NixOS containers (containers.<name>, container@.service) with nixrun instead of systemd-nspawn";

    package = lib.mkOption {
      type = lib.types.package;
      default = pkgs.callPackage ../default.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage <nixrun>/default.nix { }";
      description = "The nixrun package (nixrun, nixrunctl, the start script and nixrun@.service).";
    };
  };

  config = lib.mkIf cfg.enable {
    environment.systemPackages = [ cfg.package ];

    # nixrun@.service, for roots that are not NixOS containers (a Debian tree
    # in /var/lib/containers/NAME, /etc/nixrun/NAME.conf).
    systemd.packages = [ cfg.package ];

    warnings = lib.concatLists (
      lib.mapAttrsToList (
        name: c:
        let
          opts = unsupported c;
        in
        lib.optional (opts != [ ])
          "containers.${name}: nixrun does not support ${lib.concatStringsSep ", " opts} yet; container@${name} will fail to start until these are unset or virtualisation.nixrun is disabled."
      ) config.containers
    );

    systemd.services = lib.mkMerge [
      {
        # A drop-in on the packaged unit: its start script needs coreutils,
        # which a unit from systemd.packages does not get on its PATH.
        "nixrun@".path = [ pkgs.coreutils ];
      }
      # Only where NixOS defines the units: an override alone would be a unit
      # with nothing but ExecStart.
      (lib.mkIf config.boot.enableContainers (
        {
          "container@" = override "template" [ ] { };
        }
        // lib.mapAttrs' (
          name: c: lib.nameValuePair "container@${name}" (override name (flagsFor c) c.extraVeths)
        ) config.containers
      ))
    ];
  };
}
