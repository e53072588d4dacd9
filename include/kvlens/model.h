// Model: a GGUF decoder loaded through llama.cpp, its architecture facts, tokenizer and chat template.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct llama_model;
struct llama_vocab;

namespace kvlens {

using Token = int32_t;

// The checks kvlens makes before llama.cpp sees a model file (Model's constructor runs them): it exists, is not a
// folder or empty, has the GGUF magic, a header gguf can read, a general.architecture string, every tensor's data
// inside the file, and is not a recurrent architecture. Returns the architecture; kvlens::Error otherwise.
std::string validate_gguf(const std::string & path);

struct ModelParams {
    std::string path;
    int  n_gpu_layers = 0;      // -ngl: layers on GPU / RPC devices (the last ones; n_layer + 1 includes the output)
    bool vocab_only   = false;  // tokenizer only (no weights; facts() then holds n_vocab, arch, name and file size)
    std::string rpc;            // --rpc HOST:PORT[,HOST:PORT...]: llama.cpp RPC servers (kvlens/rpc.h)
    std::vector<float> tensor_split;  // -ts: share of the offloaded layers per device, in device order
};

struct ModelFacts {
    std::string arch;          // general.architecture, e.g. "qwen3"
    std::string name;          // general.name (may be empty)
    int n_layer = 0, n_head = 0, n_head_kv = 0;
    int head_dim_k = 0, head_dim_v = 0;  // per-head K and V widths
    int n_embd = 0, n_ctx_train = 0, n_vocab = 0;
    uint64_t n_params = 0, file_bytes = 0;
    int kv_row() const { return n_head_kv * head_dim_k; }          // floats in one K row of one layer
    int kv_row_v() const { return n_head_kv * head_dim_v; }
    // Bytes the KV cache holds per token (all layers) for given cache element sizes (f16 = 2).
    double kv_bytes_per_token(double k_elem_bytes = 2, double v_elem_bytes = 2) const;
    // Bytes of all-layer hidden states (embedding input + every layer output) per token, in f32.
    double hidden_bytes_per_token() const;
};

struct ChatMessage {
    std::string role;     // "system" | "user" | "assistant"
    std::string content;
};

class Model {
public:
    // Validates the file before llama.cpp sees it; throws kvlens::Error with one clear line.
    static std::shared_ptr<Model> load(const ModelParams & params);
    ~Model();

    const ModelFacts & facts() const { return facts_; }
    std::string meta(const std::string & key) const;  // GGUF metadata value as text ("" if absent)

    std::vector<Token> tokenize(const std::string & text, bool add_special, bool parse_special = true) const;
    std::string piece(Token t, bool special = true) const;
    std::string detokenize(const std::vector<Token> & toks, bool special = false) const;
    bool is_eog(Token t) const;
    Token bos() const;
    Token eos() const;
    bool add_bos() const;  // does the tokenizer add BOS by default
    // Single token id of a special text such as "<think>", or -1 if it is not one token.
    Token special_token(const std::string & text) const;

    // Render a conversation with the model's chat template (GGUF tokenizer.chat_template) or an explicit
    // template (a template text or a llama.cpp built-in name such as "chatml"). add_assistant appends the
    // assistant turn opener. Throws if no template is available or it is not supported.
    std::string apply_chat_template(const std::vector<ChatMessage> & msgs, bool add_assistant,
                                    const std::string & tmpl_override = "") const;
    bool has_chat_template() const;

    llama_model * raw() const { return model_; }  // engine-internal
    const llama_vocab * vocab() const;

private:
    Model() = default;
    llama_model * model_ = nullptr;
    ModelFacts facts_;
};

}  // namespace kvlens
