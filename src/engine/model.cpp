// Model: validate a GGUF before llama.cpp sees it, load it, report its facts; tokenizer and chat template.
#include "kvlens/model.h"

#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "ggml-backend.h"
#include "gguf.h"
#include "kvlens/error.h"
#include "kvlens/log.h"
#include "kvlens/rpc.h"
#include "llama.h"

namespace kvlens {
namespace {

// Architectures whose memory is a recurrent state rather than a KV cache (llama.cpp's list, by name).
bool arch_is_recurrent(const std::string & a) {
    static const char * names[] = {"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7", "jamba",
                                   "falcon-h1", "granitehybrid", "lfm2", "nemotron_h", "plamo2", "qwen3next"};
    for (const char * n : names) if (a == n) return true;
    return false;
}

}  // namespace

// Checks header, metadata and that every tensor's data lies inside the file. Returns the architecture.
std::string validate_gguf(const std::string & path) {
    struct stat st{};
    if (path.empty()) throw Error("no model given (-m PATH.gguf)");
    if (stat(path.c_str(), &st) != 0) throw Error("model file not found: " + path);
    if (S_ISDIR(st.st_mode)) throw Error("model path is a directory, not a GGUF file: " + path);
    if (st.st_size == 0) throw Error("model file is empty: " + path);
    FILE * f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error("cannot open model file: " + path);
    char magic[4] = {0};
    size_t n = std::fread(magic, 1, 4, f);
    std::fclose(f);
    if (n < 4 || std::memcmp(magic, "GGUF", 4) != 0) throw Error("not a GGUF file (bad magic): " + path);

    gguf_init_params gp = {/*no_alloc*/ true, /*ctx*/ nullptr};
    gguf_context * g = gguf_init_from_file(path.c_str(), gp);
    if (!g) throw Error("GGUF header is truncated or corrupt: " + path);
    std::string arch;
    int64_t key = gguf_find_key(g, "general.architecture");
    if (key >= 0 && gguf_get_kv_type(g, key) == GGUF_TYPE_STRING) arch = gguf_get_val_str(g, key);
    size_t end = gguf_get_data_offset(g);
    for (int64_t i = 0; i < gguf_get_n_tensors(g); ++i) {
        size_t e = gguf_get_data_offset(g) + gguf_get_tensor_offset(g, i) + gguf_get_tensor_size(g, i);
        if (e > end) end = e;
    }
    gguf_free(g);
    if (arch.empty()) throw Error("GGUF has no general.architecture: " + path);
    if (end > (size_t) st.st_size)
        throw Error("model file is truncated: tensor data needs " + std::to_string(end) + " bytes, file has " +
                    std::to_string((long long) st.st_size) + ": " + path);
    if (arch_is_recurrent(arch))
        throw Error("architecture '" + arch + "' keeps a recurrent state, not a KV cache: kvlens needs a KV-cache decoder");
    return arch;
}

namespace {

int meta_int(llama_model * m, const std::string & key, int dflt) {
    char buf[64];
    if (llama_model_meta_val_str(m, key.c_str(), buf, sizeof buf) < 0) return dflt;
    return std::atoi(buf);
}

}  // namespace

double ModelFacts::kv_bytes_per_token(double kb, double vb) const {
    return (double) n_layer * n_head_kv * (head_dim_k * kb + head_dim_v * vb);
}

double ModelFacts::hidden_bytes_per_token() const { return (double) (n_layer + 1) * n_embd * 4.0; }

std::shared_ptr<Model> Model::load(const ModelParams & p) {
    init_logging();
    std::string arch = validate_gguf(p.path);
    llama_backend_init();
    if (!p.rpc.empty()) add_rpc_servers(parse_rpc_servers(p.rpc));  // probed first: ggml aborts on a dead one
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = p.n_gpu_layers;
    mp.vocab_only = p.vocab_only;
    std::vector<float> split(llama_max_devices(), 0.0f);
    if (!p.tensor_split.empty()) {
        size_t n_dev = 0;  // the devices llama.cpp splits layers over: GPUs and RPC servers
        for (size_t i = 0; i < ggml_backend_dev_count(); ++i) {
            const auto t = ggml_backend_dev_type(ggml_backend_dev_get(i));
            n_dev += t == GGML_BACKEND_DEVICE_TYPE_GPU || t == GGML_BACKEND_DEVICE_TYPE_IGPU;
        }
        if (p.tensor_split.size() > n_dev)
            throw Error("-ts gives " + std::to_string(p.tensor_split.size()) + " shares but there are " +
                        std::to_string(n_dev) + " GPU/RPC devices (kvlens info --rpc ... lists them)");
        float sum = 0;
        for (size_t i = 0; i < p.tensor_split.size(); ++i) {
            if (!(p.tensor_split[i] >= 0.0f) || !std::isfinite(p.tensor_split[i])) throw Error("-ts: shares must be finite and >= 0");
            split[i] = p.tensor_split[i], sum += split[i];
        }
        if (!(sum > 0)) throw Error("-ts: the shares sum to 0");
        mp.tensor_split = split.data();
    }
    llama_model * m = llama_model_load_from_file(p.path.c_str(), mp);
    if (!m) throw Error("llama.cpp could not load '" + p.path + "' (architecture '" + arch + "'; run with -v for details)");
    std::shared_ptr<Model> model(new Model());
    model->model_ = m;
    if (!p.vocab_only && (llama_model_is_recurrent(m) || llama_model_is_hybrid(m)))
        throw Error("architecture '" + arch + "' keeps a recurrent state, not a KV cache: kvlens needs a KV-cache decoder");
    ModelFacts & f = model->facts_;
    f.arch = arch;
    f.name = model->meta("general.name");
    f.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(m));
    if (p.vocab_only) {  // no hyper-parameters are loaded (llama.cpp aborts on a per-layer query): the tokenizer only
        struct stat st{};
        if (stat(p.path.c_str(), &st) == 0) f.file_bytes = (uint64_t) st.st_size;
        return model;
    }
    f.n_layer = llama_model_n_layer(m);
    f.n_head = llama_model_n_head(m);
    f.n_head_kv = llama_model_n_head_kv(m);
    f.n_embd = llama_model_n_embd(m);
    f.n_ctx_train = llama_model_n_ctx_train(m);
    int hd = f.n_head > 0 ? f.n_embd / f.n_head : 0;
    f.head_dim_k = meta_int(m, arch + ".attention.key_length", hd);
    f.head_dim_v = meta_int(m, arch + ".attention.value_length", hd);
    f.n_params = llama_model_n_params(m);
    struct stat st{};
    if (stat(p.path.c_str(), &st) == 0) f.file_bytes = (uint64_t) st.st_size;
    return model;
}

Model::~Model() {
    if (model_) llama_model_free(model_);
}

const llama_vocab * Model::vocab() const { return llama_model_get_vocab(model_); }

std::string Model::meta(const std::string & key) const {
    int n = llama_model_meta_val_str(model_, key.c_str(), nullptr, 0);
    if (n < 0) return "";
    std::string s(n + 1, '\0');
    llama_model_meta_val_str(model_, key.c_str(), s.data(), s.size());
    s.resize(n);
    return s;
}

std::vector<Token> Model::tokenize(const std::string & text, bool add_special, bool parse_special) const {
    int n = -llama_tokenize(vocab(), text.data(), (int) text.size(), nullptr, 0, add_special, parse_special);
    std::vector<Token> out(std::max(n, 0));
    if (n > 0) {
        int r = llama_tokenize(vocab(), text.data(), (int) text.size(), out.data(), n, add_special, parse_special);
        if (r < 0) throw Error("tokenization failed");
        out.resize(r);
    }
    return out;
}

std::string Model::piece(Token t, bool special) const {
    char buf[256];
    int n = llama_token_to_piece(vocab(), t, buf, sizeof buf, 0, special);
    if (n < 0) {
        std::string s(-n, '\0');
        llama_token_to_piece(vocab(), t, s.data(), (int) s.size(), 0, special);
        return s;
    }
    return std::string(buf, n);
}

std::string Model::detokenize(const std::vector<Token> & toks, bool special) const {
    std::string s;
    for (Token t : toks) s += piece(t, special);
    return s;
}

bool Model::is_eog(Token t) const { return llama_vocab_is_eog(vocab(), t); }
Token Model::bos() const { return llama_vocab_bos(vocab()); }
Token Model::eos() const { return llama_vocab_eos(vocab()); }
bool Model::add_bos() const { return llama_vocab_get_add_bos(vocab()); }

Token Model::special_token(const std::string & text) const {
    auto t = tokenize(text, false, true);
    return t.size() == 1 ? t[0] : -1;
}

bool Model::has_chat_template() const { return llama_model_chat_template(model_, nullptr) != nullptr; }

std::string Model::apply_chat_template(const std::vector<ChatMessage> & msgs, bool add_assistant,
                                       const std::string & tmpl_override) const {
    const char * tmpl = tmpl_override.empty() ? llama_model_chat_template(model_, nullptr) : tmpl_override.c_str();
    if (!tmpl) throw Error("the model has no chat template: pass one with --chat-template (e.g. chatml)");
    std::vector<llama_chat_message> cm;
    for (auto & m : msgs) cm.push_back({m.role.c_str(), m.content.c_str()});
    size_t total = 256;
    for (auto & m : msgs) total += m.content.size() * 2 + 64;
    std::vector<char> buf(total);
    int n = llama_chat_apply_template(tmpl, cm.data(), cm.size(), add_assistant, buf.data(), (int) buf.size());
    if (n < 0) throw Error("chat template not supported by llama.cpp's built-in templates; pass --chat-template chatml (or another built-in name)");
    if ((size_t) n > buf.size()) {
        buf.resize(n);
        n = llama_chat_apply_template(tmpl, cm.data(), cm.size(), add_assistant, buf.data(), (int) buf.size());
    }
    return std::string(buf.data(), n);
}

}  // namespace kvlens
