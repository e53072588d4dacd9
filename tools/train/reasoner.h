// The tiny qwen3 reasoner: hyper-parameters, weights (named as llama.cpp's qwen3 loader names them), the
// training forward graph on ggml ops that have a backward pass, and GGUF export/import.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ggml-backend.h"
#include "ggml.h"

namespace kvlens::train {

struct HParams {
    int n_vocab = 0;
    int n_ctx = 256;       // qwen3.context_length
    int n_embd = 128;
    int n_layer = 6;
    int n_head = 4;
    int n_head_kv = 2;
    int head_dim = 32;
    int n_ff = 384;
    float rms_eps = 1e-6f;
    float rope_base = 10000.0f;
};

struct Layer {
    ggml_tensor *attn_norm, *wq, *wk, *wv, *wo, *q_norm, *k_norm, *ffn_norm, *ffn_gate, *ffn_up, *ffn_down;
};

struct Weights {
    HParams hp;
    ggml_context * ctx = nullptr;
    ggml_backend_buffer_t buf = nullptr;
    ggml_tensor *tok_embd = nullptr, *output_norm = nullptr, *output = nullptr;
    std::vector<Layer> layers;
    std::vector<ggml_tensor *> all;  // every weight, in file order
    std::vector<ggml_tensor *> trained;  // the weights mark_params() made trainable (in file order)
    std::string chat_template;       // written by save_gguf (empty: the committed model's kChatTemplate)

    void create(const HParams & hp, ggml_backend_t backend);
    void init_random(uint64_t seed);
    // Marks the weights the optimizer updates: every one, or (from_layer >= 0) only those of blocks from_layer..
    // (embedding, output norm and head frozen) — the layers --grow-layers puts on top of a trained model.
    void mark_params(int from_layer = -1);
    // The blocks from `first` on become identity blocks: their attention output and FFN down projections are
    // zero, so the residual stream, and the model's function, are unchanged until training moves them.
    void zero_residual_writes(int first);
    void free();
    int64_t n_params() const;
};

// Inputs of one packed batch: B rows of T tokens; pos restarts at 0 for each packed example; mask is
// [T, T, 1, B] f32 (0 where key j may be seen by query i: same example and j <= i, else -inf).
struct BatchInputs {
    ggml_tensor * tokens;  // I32 [T*B]
    ggml_tensor * pos;     // I32 [T*B]
    ggml_tensor * mask;    // F32 [T, T, 1, B]
};

// logits F32 [n_vocab, T*B]
ggml_tensor * forward(ggml_context * ctx, const Weights & w, const BatchInputs & in, int T, int B);

// GGUF: the full model file llama.cpp loads (weights + qwen3 metadata + tokenizer + chat template), plus
// extra integer keys (training state) for checkpoints.
void save_gguf(const Weights & w, const std::string & path, const std::map<std::string, int64_t> & extra);
// Reads hyper-parameters (and extra keys) from a file written by save_gguf.
HParams read_hparams(const std::string & path, std::map<std::string, int64_t> * extra);
// Copies the weights of a file written by save_gguf into w (created with matching hparams).
void load_weights(Weights & w, const std::string & path);
// As load_weights, but only blocks below n_layers_in_file are read (the rest keep their values): a model grown
// by --grow-layers starts from a smaller file.
void load_weights_below(Weights & w, const std::string & path, int n_layers_in_file);
// tokenizer.chat_template of a GGUF ("" when it has none).
std::string read_chat_template(const std::string & path);

}  // namespace kvlens::train
