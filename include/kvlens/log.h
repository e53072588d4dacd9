// Quiet llama.cpp/ggml logging by default: only errors reach stderr unless verbose.
#pragma once

namespace kvlens {

// 0: errors only (default), 1: warnings, 2: everything llama.cpp says.
void set_verbosity(int level);

}  // namespace kvlens
