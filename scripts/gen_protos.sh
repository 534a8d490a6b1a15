#!/usr/bin/env bash
# The one script that makes every generated artifact from proto/:
#   clients/python/smartstart/**      *_pb2.py, *_pb2_grpc.py and mypy-protobuf .pyi stubs
#   clients/typescript/src/gen/**         protoc-gen-es TypeScript (clients/typescript/buf.gen.yaml)
#   clients/descriptors/smartstart.binpb   FileDescriptorSet (with imports and comments) for
#                                          Envoy / grpc-gateway, by `buf build`
# Third-party protos come from the installed googleapis-common-protos package (never edited).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
# protoc finds the mypy-protobuf plugins on PATH, next to the interpreter.
export PATH="$(dirname "$PY"):$PATH"

"$PY" scripts/protodeps.py .build/protodeps
WKT=$("$PY" -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
OUT=clients/python
mapfile -t PROTOS < <(cd proto && find smartstart -name '*.proto' | LC_ALL=C sort)

find "$OUT/smartstart" \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \) -delete
"$PY" -m grpc_tools.protoc -I proto -I .build/protodeps -I "$WKT" \
  --python_out="$OUT" --grpc_python_out="$OUT" \
  --mypy_out="$OUT" --mypy_grpc_out="$OUT" \
  "${PROTOS[@]}"
# Every generated directory is a regular package (mypy and setuptools both want __init__.py).
find "$OUT/smartstart" -type d -exec sh -c 'test -f "$1/__init__.py" || : > "$1/__init__.py"' _ {} \;

BUF="$(dirname "$PY")/buf"
# protoc-gen-es comes from clients/typescript/node_modules (`make` runs npm ci first).
"$BUF" generate --template clients/typescript/buf.gen.yaml --path proto/smartstart \
  --path .build/protodeps/google/rpc/error_details.proto

mkdir -p clients/descriptors
"$BUF" build --path proto/smartstart --as-file-descriptor-set \
  -o clients/descriptors/smartstart.binpb
echo "generated ${#PROTOS[@]} proto files"
