// Quiet llama.cpp/ggml logging by default: kvlens reports failures itself as one line (kvlens::Error);
// -v shows llama.cpp's errors and warnings, -vv everything.
#pragma once

namespace kvlens {

// 0: nothing from llama.cpp (default), 1: its errors and warnings, 2: everything it says.
void set_verbosity(int level);

// Install the filter (idempotent; Model::load calls it). Keeps the level set by set_verbosity.
void init_logging();

}  // namespace kvlens
