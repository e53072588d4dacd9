// kvlens kv-dump -m M -p P --layers ... -o DIR: captured K and V (and hidden states) as .npy + manifest.json.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <fstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/npy.h"

using namespace kvlens;

static int cmd_kv_dump(int argc, char ** argv) {
    CLI::App app{"dump the K/V rows (and hidden states) the tap captures, as .npy + manifest.json", "kvlens kv-dump"};
    cli::CommonArgs a;
    std::string prompt, file, layers_spec = "all", out_dir = "kv-dump";
    int n_predict = 0;
    bool hidden = false, chat = false;
    cli::add_model_flags(app, a);
    cli::add_session_flags(app, a);
    cli::add_sampling_flags(app, a);
    app.add_option("-p,--prompt", prompt, "prompt text");
    app.add_option("-f,--file", file, "read the prompt from a file");
    app.add_option("--layers", layers_spec, "layers: all | last:N | 0,3,5 | 2-5");
    app.add_option("-n,--n-predict", n_predict, "also generate this many tokens and dump their rows (-1 = until the context ends)");
    app.add_flag("--hidden", hidden, "also dump hidden states (embedding input + each chosen layer's output)");
    app.add_flag("--chat", chat, "wrap the prompt as a user turn with the model's chat template");
    cli::PromptArgs pa;
    std::string reasoning = "auto";
    cli::add_prompt_flags(app, pa);
    app.add_option("--rea,--reasoning", reasoning, "with --chat: on (slow: think), off (fast) or auto (the template's default)")
        ->capture_default_str();
    app.add_option("-o,--output", out_dir, "output directory");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (n_predict < 0) n_predict = INT_MAX;  // -1: until the context ends

    std::string text = cli::read_prompt(prompt, file);
    // the output folder first (fail before any work); an older dump in it is replaced as a whole, below
    if (mkdir(out_dir.c_str(), 0755) != 0 && errno != EEXIST) throw Error("cannot create directory " + out_dir + ": " + std::strerror(errno));
    {
        struct stat st{};
        if (stat(out_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) throw Error("-o " + out_dir + ": not a directory");
        check_writable(out_dir + "/manifest.json");
    }
    auto model = cli::load_model(a);
    const ModelFacts & f = model->facts();
    TapSpec spec;
    spec.layers = parse_layers(layers_spec, f.n_layer);
    spec.hidden = spec.hidden_embedding = hidden;
    auto toks = cli::prompt_tokens(*model, pa, chat, reasoning, text);
    if (toks.empty()) throw Error("the prompt tokenizes to nothing");

    Session s(model, a.session);
    s.set_tap(spec);
    s.set_sampling(a.sampling);
    KvStore store(spec.layers, f.kv_row(), hidden ? f.n_embd : 0);
    s.subscribe(&store);
    s.eval(toks);
    if (n_predict > 0) s.generate(n_predict);
    const int n_pos = s.n_past();

    // manifest.json goes first and comes back last: while the .npy files are replaced the folder holds no manifest,
    // so it never describes files of two dumps; each file is written whole (kvlens/atomic_file.h)
    if (unlink((out_dir + "/manifest.json").c_str()) != 0 && errno != ENOENT) throw Error("cannot replace " + out_dir + "/manifest.json");
    const size_t L = spec.layers.size(), row = f.kv_row();
    std::vector<float> k(L * n_pos * row), v(L * n_pos * row);
    for (size_t l = 0; l < L; ++l)
        for (int p = 0; p < n_pos; ++p) {
            std::copy(store.k(l, p), store.k(l, p) + row, k.begin() + (l * n_pos + p) * row);
            std::copy(store.v(l, p), store.v(l, p) + row, v.begin() + (l * n_pos + p) * row);
        }
    std::vector<size_t> shape = {L, (size_t) n_pos, (size_t) f.n_head_kv, (size_t) f.head_dim_k};
    write_npy(out_dir + "/k.npy", k.data(), shape);
    write_npy(out_dir + "/v.npy", v.data(), shape);
    nlohmann::ordered_json files = {{"k.npy", shape}, {"v.npy", shape}};
    if (hidden) {
        // slot 0 = embedding-layer input, then the chosen layers' outputs
        std::vector<float> h((L + 1) * n_pos * f.n_embd);
        for (size_t hs = 0; hs <= L; ++hs) {
            int slot = hs == 0 ? store.hidden_slot_embedding() : (int) hs - 1;
            for (int p = 0; p < n_pos; ++p)
                std::copy(store.hidden(slot, p), store.hidden(slot, p) + f.n_embd, h.begin() + (hs * n_pos + p) * f.n_embd);
        }
        std::vector<size_t> hshape = {L + 1, (size_t) n_pos, (size_t) f.n_embd};
        write_npy(out_dir + "/hidden.npy", h.data(), hshape);
        files["hidden.npy"] = hshape;
    } else if (unlink((out_dir + "/hidden.npy").c_str()) != 0 && errno != ENOENT) {  // an older dump's
        throw Error("cannot remove the older " + out_dir + "/hidden.npy");
    }
    std::vector<std::string> pieces;
    for (Token t : s.tokens()) pieces.push_back(model->piece(t, true));
    nlohmann::ordered_json man = {
        {"model", a.model.path}, {"arch", f.arch}, {"n_layer", f.n_layer}, {"n_head_kv", f.n_head_kv},
        {"head_dim", f.head_dim_k}, {"n_embd", f.n_embd}, {"layers", spec.layers}, {"n_positions", n_pos},
        {"n_prompt_tokens", toks.size()}, {"positions", "0.." + std::to_string(n_pos - 1)},
        {"tokens", s.tokens()}, {"pieces", pieces}, {"dtype", "float32"}, {"files", files},
        {"layout", {{"k.npy", "[layer (as in layers)][position][kv_head][head_dim]: K after RoPE (and k-norm) as written to the cache"},
                    {"v.npy", "[layer][position][kv_head][head_dim]: V as written to the cache"},
                    {"hidden.npy", "[0 = embedding-layer input, then each chosen layer's output][position][n_embd]"}}},
        {"cache_type_k", a.session.cache_type_k}, {"cache_type_v", a.session.cache_type_v}};
    write_text_atomic(out_dir + "/manifest.json", man.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    std::fprintf(stderr, "kv-dump: %d positions x %zu layers -> %s/{k,v%s}.npy + manifest.json\n", n_pos, L,
                 out_dir.c_str(), hidden ? ",hidden" : "");
    return 0;
}

KVLENS_COMMAND("kv-dump", "write captured K/V (and hidden states) as .npy with a JSON manifest", cmd_kv_dump);
