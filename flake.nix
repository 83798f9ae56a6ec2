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

          # Placeholder: the first build fails and prints the real hash; put it here. It must be
          # updated whenever package-lock.json changes.
          # fetchNpmDeps only downloads lock entries that have a `resolved` URL: regenerate the lock
          # file with npm's omit-lockfile-registry-resolved off if it was written without them.
          npmDepsHash = pkgs.lib.fakeHash;

          npmBuildScript = "build";

          # better-sqlite3 (the conversation store) is compiled from source by node-gyp.
          nativeBuildInputs = [ pkgs.python3 ];

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
