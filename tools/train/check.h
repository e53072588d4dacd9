// Equivalence of the training graph and llama.cpp's qwen3 forward pass on an exported model.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvlens::train {

// Logits [T][n_vocab] of the training graph (one causal sequence) for the model in gguf_path.
std::vector<float> graph_logits(const std::string & gguf_path, const std::vector<int32_t> & tokens, int threads);
// max |a-b| / max |b|
double max_rel_logit_diff(const std::vector<float> & a, const std::vector<float> & b);
// Worst max_rel_logit_diff over the texts (tokenized by llama.cpp, specials parsed).
double compare_with_llama(const std::string & gguf_path, const std::vector<std::string> & texts, int threads);

}  // namespace kvlens::train

namespace kvlens::train {
// Names of tensors with identical data in two GGUF files (a training step must change every weight).
std::vector<std::string> unchanged_tensors(const std::string & path_a, const std::string & path_b);
}  // namespace kvlens::train

namespace kvlens::train {
// Training-graph logits of examples packed several to a row in a multi-row batch vs each example alone.
double packed_vs_single(const std::string & gguf_path, int threads);
}  // namespace kvlens::train
