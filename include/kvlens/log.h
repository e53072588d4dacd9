// Quiet llama.cpp/ggml logging by default: only errors reach stderr unless verbose.
#pragma once

namespace kvlens {

// 0: errors only (default), 1: warnings, 2: everything llama.cpp says.
void set_verbosity(int level);

// Install the filter (idempotent; Model::load calls it). Keeps the level set by set_verbosity.
void init_logging();

}  // namespace kvlens
