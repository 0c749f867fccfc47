#!/usr/bin/env bash
# Runs the whole suite locally: installs what is missing (setup.sh), builds in Release, then hands over to
# the apphost, which starts PostgreSQL, Redis and every service and stops them all on Ctrl-C.
# Arguments go to the apphost; `build/run.sh --help` lists them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

./build/setup.sh

if ! dotnet build Lifeline.slnx -c Release -nologo -v quiet; then
  # Someone may be mid-edit elsewhere in the solution: what the apphost runs is enough.
  echo "run: the solution did not build; building only the apphost and the services it runs" >&2
  dotnet build apphost/Lifeline.AppHost/Lifeline.AppHost.csproj -c Release -nologo -v quiet
  for project in services/*/*.csproj gateway/*/*.csproj; do
    case "$project" in
      *ServiceDefaults*) ;;  # a library, built as a dependency of the services
      *) dotnet build "$project" -c Release -nologo -v quiet \
           || echo "run: $project did not build; the apphost runs its last Release build, if there is one" >&2 ;;
    esac
  done
fi

exec dotnet apphost/Lifeline.AppHost/bin/Release/net10.0/Lifeline.AppHost.dll "$@"
