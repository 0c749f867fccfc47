#!/usr/bin/env bash
# Generates typed TypeScript stubs (ts-proto, grpc-js services) for the contracts the worker uses into
# src/generated/ (ignored by git). Needs protoc (Debian's protobuf-compiler; the google/protobuf well-known
# types come from libprotobuf-dev under /usr/include) and `npm ci` (the ts-proto plugin). Generates into a
# scratch directory and swaps it in, so an interrupted run never leaves half a tree behind.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
protos=$(cd "$here/../../../protos" && pwd)
out="$here/src/generated"
plugin="$here/node_modules/.bin/protoc-gen-ts_proto"

protoc=${PROTOC:-$(command -v protoc || true)}
[[ -n $protoc ]] || { echo "generate.sh: protoc not found (apt-get install protobuf-compiler libprotobuf-dev)" >&2; exit 1; }
[[ -x $plugin ]] || { echo "generate.sh: $plugin missing: run npm ci first" >&2; exit 1; }

includes=(-I "$protos" -I "$here/proto")
# protoc finds the well-known types next to itself (/usr/include); say so explicitly when they are there.
[[ -f /usr/include/google/protobuf/duration.proto ]] && includes+=(-I /usr/include)

scratch=$(mktemp -d "$here/src/.generated.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
"$protoc" "${includes[@]}" \
  --plugin=protoc-gen-ts_proto="$plugin" \
  --ts_proto_out="$scratch" \
  --ts_proto_opt=outputServices=grpc-js,env=node,esModuleInterop=true,forceLong=string,useDate=false,useOptionals=none,exportCommonSymbols=false \
  lifeline/common/v1/common.proto lifeline/queue/v1/queue.proto lifeline/registry/v1/registry.proto \
  google/rpc/status.proto

old="$here/src/.generated-old.$$"
[[ -d $out ]] && mv "$out" "$old"
mv "$scratch" "$out"
rm -rf "$old"
trap - EXIT
echo "generate.sh: stubs -> ${out#"$here"/}"
