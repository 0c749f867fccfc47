#!/usr/bin/env bash
# Generates the Python gRPC stubs for Lifeline's contracts into workers/python/_generated/ (ignored by git).
# Needs Debian's protobuf-compiler and protobuf-compiler-grpc (build/setup.sh installs them). Idempotent:
# generates into a scratch directory and swaps it in, so a concurrent run or an interrupted one never
# leaves a half-written _generated/ behind.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
protos=$(cd "$here/../../../protos" && pwd)
out="$here/_generated"

command -v protoc >/dev/null 2>&1 || { echo "generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
plugin=$(command -v grpc_python_plugin) || { echo "generate.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2; exit 1; }

# Our contracts plus the vendored google/api annotations they import (there is no googleapis package);
# google/protobuf/*.proto come with protoc itself.
mapfile -t files < <(cd "$protos" && find lifeline google -name '*.proto' | sort)

scratch=$(mktemp -d "$here/.generate.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
protoc --python_out="$scratch" --grpc_out="$scratch" --plugin=protoc-gen-grpc="$plugin" -I "$protos" "${files[@]}"

# Regular packages for our own tree; `google` stays a namespace package so google.api (here) and
# google.protobuf (python3-protobuf) both resolve.
find "$scratch/lifeline" -type d -exec touch {}/__init__.py \;

old="$here/.generated-old.$$"
[[ -d "$out" ]] && mv "$out" "$old"
mv "$scratch" "$out"
rm -rf "$old"
trap - EXIT
echo "generate.sh: ${#files[@]} protos -> ${out}"
