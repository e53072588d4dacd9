// Parse llama_state_seq_get_data's byte layout (pinned llama.cpp: llama_kv_cache::state_write) for an f32 cache.
#pragma once
#include <cstdint>
#include <vector>

namespace kvlens::test {

struct SeqState {
    std::vector<int> pos;                   // position of each cell, in cell order
    std::vector<std::vector<float>> k, v;   // [layer][cell * row]
    int row = 0;
    bool v_trans = false;
};

// Returns false if the layout is not the expected one (or the cache is not f32).
bool parse_seq_state(const std::vector<uint8_t> & data, SeqState & out);

}  // namespace kvlens::test
