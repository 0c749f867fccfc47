#!/usr/bin/env bash
# Runs the whole suite locally: installs what is missing (setup.sh), builds in Release, then starts the .NET Aspire
# AppHost (apphost/Lifeline.AppHost), which runs PostgreSQL, Redis, every service, the gateway and the Aspire
# dashboard, restarts what crashes, and stops them all in order on Ctrl-C / SIGTERM.
# Arguments go to the AppHost; `build/run.sh --help` lists them.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

./build/setup.sh

# Aspire starts each service with `dotnet run --no-build --configuration Release` (the AppHost's configuration), so
# the services must be built in Release first; building the AppHost builds them (it references every service).
if ! dotnet build Lifeline.slnx -c Release -nologo -v quiet; then
  # Someone may be mid-edit elsewhere in the solution (tests, benchmarks): what the AppHost runs is enough.
  echo "run: the solution did not build; building only the AppHost and the services it runs" >&2
  dotnet build apphost/Lifeline.AppHost/Lifeline.AppHost.csproj -c Release -nologo -v quiet
fi

exec dotnet apphost/Lifeline.AppHost/bin/Release/net10.0/Lifeline.AppHost.dll "$@"
