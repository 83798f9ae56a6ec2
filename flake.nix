{
  description = "claude-code-api: OpenAI-compatible gateway in front of the Claude Code CLI";

  inputs = {
    # A release branch that still carries nodejs_20 (the project's Node; upstream end-of-life
    # since 2026-04, so newer nixpkgs may drop it).
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.05";
    flake-utils.url = "github:numtide/flake-utils";
  };

  outputs = { self, nixpkgs, flake-utils }:
    flake-utils.lib.eachDefaultSystem (system:
      let
        pkgs = nixpkgs.legacyPackages.${system};
        nodejs = pkgs.nodejs_20;
        manifest = builtins.fromJSON (builtins.readFile ./package.json);
      in
      {
        packages.default = pkgs.buildNpmPackage {
          pname = "claude-code-api";
          version = manifest.version;
          src = ./.;
          inherit nodejs;

          # Dependencies straight from package-lock.json: each entry's `resolved` URL and `integrity`
          # hash (the project's .npmrc keeps npm writing the URLs), so there is no npmDepsHash to update.
          npmDeps = pkgs.importNpmLock { npmRoot = ./.; };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;

          npmBuildScript = "build";

          # better-sqlite3 (the conversation store) is compiled from source by node-gyp.
          nativeBuildInputs = [ pkgs.python3 pkgs.makeWrapper ];

          # The gateway starts each CLI through util-linux `setpriv --pdeathsig KILL`, so that no CLI
          # outlives it; put it on the bins' PATH.
          postFixup = ''
            for bin in $out/bin/*; do
              wrapProgram "$bin" --suffix PATH : ${pkgs.lib.makeBinPath [ pkgs.util-linux ]}
            done
          '';

          # The gateway runs `claude` from PATH (or claude.command). The pinned npm CLI inside this
          # package is a prebuilt glibc binary, not patched for NixOS; on NixOS point claude.command at
          # a Nix-packaged Claude Code instead.

          meta = {
            description = manifest.description;
            license = pkgs.lib.licenses.mit;
            mainProgram = "claude-code-api";
          };
        };

        apps.default = {
          type = "app";
          program = "${self.packages.${system}.default}/bin/claude-code-api";
        };

        devShells.default = pkgs.mkShell {
          packages = [ nodejs ];
        };
      });
}
