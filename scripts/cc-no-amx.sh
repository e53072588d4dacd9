#!/bin/sh
# Compiler launcher for scripts/build-llama-server.sh: runs the compiler with -mno-amx-* after every other flag
# (after ggml's -march=native), so llama-server's ggml-cpu is built without Intel AMX like kvlens's (CMakeLists.txt,
# llama.cpp#20824).
exec "$@" -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
