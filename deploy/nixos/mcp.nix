# NixOS module for the MCP agent: the declarative twin of deploy/install-debian.sh and
# `mcp node provision`. Same layout and same unit as deploy/systemd/mcp-agent.service:
# the mcp user with a PINNED UID (rootless podman's state is keyed by the UID; changing it loses
# every container of the node), subuid/subgid ranges, podman, /srv/mcp, and the agent binary at
# /srv/mcp/mcp-agent, which `mcp agent upgrade` replaces in place (so it is not a store path).
#
#   imports = [ ./mcp.nix ];
#   services.mcp-agent.enable = true;
#
# The agent config (/srv/mcp/mcp-agent.toml, see docs/reference/agent-config.md) and certs are
# not written here: they hold the node's key and token hashes.
{ config, lib, pkgs, ... }:

let
  cfg = config.services.mcp-agent;
in
{
  options.services.mcp-agent = {
    enable = lib.mkEnableOption "the MCP node agent";

    uid = lib.mkOption {
      type = lib.types.int;
      default = 850;
      description = "UID and GID of the mcp user. Pinned: never change it on a running node.";
    };

    binary = lib.mkOption {
      type = lib.types.str;
      default = "/srv/mcp/mcp-agent";
      description = "The agent binary (copied there by `mcp node provision` / `mcp agent upgrade`).";
    };

    configFile = lib.mkOption {
      type = lib.types.str;
      default = "/srv/mcp/mcp-agent.toml";
      description = "The agent config file.";
    };

    subIdStart = lib.mkOption {
      type = lib.types.int;
      default = 100000;
      description = "First subordinate UID/GID of the mcp user (65536 of them).";
    };

    snapshots.enable = lib.mkOption {
      type = lib.types.bool;
      default = true;
      description = "Daily registry snapshot (`mcp-agent snapshot`), like mcp-agent-snapshot.timer.";
    };
  };

  config = lib.mkIf cfg.enable {
    virtualisation.podman.enable = true;

    environment.systemPackages = [ pkgs.runc pkgs.slirp4netns pkgs.zstd pkgs.shadow ];

    users.groups.mcp.gid = cfg.uid;
    users.users.mcp = {
      isSystemUser = true;
      uid = cfg.uid;
      group = "mcp";
      home = "/srv/mcp";
      createHome = false;
      description = "MCP agent";
      linger = true;
      subUidRanges = [ { startUid = cfg.subIdStart; count = 65536; } ];
      subGidRanges = [ { startGid = cfg.subIdStart; count = 65536; } ];
    };

    # The modes of src/roles/cli/provision-steps.ts.
    systemd.tmpfiles.rules = [
      "d /srv 0775 root mcp -"
      "d /srv/mcp 0750 mcp mcp -"
      "d /srv/mcp/certs 0700 mcp mcp -"
      "d /srv/mcp/backups 0700 mcp mcp -"
    ];

    # Hardening as in deploy/systemd/mcp-agent.service (read its comment for every directive
    # left out: each breaks rootless podman, which this process starts).
    systemd.services.mcp-agent = {
      description = "MCP Agent";
      after = [ "network-online.target" ];
      wants = [ "network-online.target" ];
      wantedBy = [ "multi-user.target" ];
      # newuidmap/newgidmap (setuid wrappers on NixOS) and podman's helpers.
      path = [ "/run/wrappers" config.virtualisation.podman.package pkgs.runc pkgs.slirp4netns pkgs.zstd ];
      serviceConfig = {
        Type = "simple";
        ExecStart = "${cfg.binary} server --config ${cfg.configFile}";
        Restart = "on-failure";
        RestartSec = 5;
        KillMode = "process";
        User = "mcp";
        Group = "mcp";
        ProtectSystem = "strict";
        PrivateTmp = true;
        ReadWritePaths = [ "/srv" "-/run/user" ];
      };
    };

    systemd.services.mcp-agent-snapshot = lib.mkIf cfg.snapshots.enable {
      description = "MCP Agent registry snapshot";
      after = [ "mcp-agent.service" ];
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${cfg.binary} snapshot --config ${cfg.configFile}";
        User = "mcp";
        Group = "mcp";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectControlGroups = true;
        RestrictSUIDSGID = true;
        RestrictNamespaces = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RestrictRealtime = true;
        ReadWritePaths = [ "/srv/mcp" ];
      };
    };

    systemd.timers.mcp-agent-snapshot = lib.mkIf cfg.snapshots.enable {
      wantedBy = [ "timers.target" ];
      timerConfig = {
        OnCalendar = "daily";
        Persistent = true;
        RandomizedDelaySec = "1h";
        Unit = "mcp-agent-snapshot.service";
      };
    };
  };
}
