// kvlens info -m M: architecture facts and per-token memory (KV cache vs all-layer hidden states).
#include <cstdio>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "kvlens/rpc.h"

using namespace kvlens;

static int cmd_info(int argc, char ** argv) {
    CLI::App app{"architecture and per-token memory facts", "kvlens info"};
    cli::CommonArgs a;
    a.model.vocab_only = false;
    cli::add_model_flags(app, a);
    bool json = false;
    app.add_flag("--json", json, "print one JSON object");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;

    auto model = cli::load_model(a);
    const ModelFacts & f = model->facts();
    double kv16 = f.kv_bytes_per_token(2, 2), kv32 = f.kv_bytes_per_token(4, 4), hid = f.hidden_bytes_per_token();
    nlohmann::ordered_json j = {
        {"model", a.model.path}, {"arch", f.arch}, {"name", f.name}, {"n_params", f.n_params},
        {"file_bytes", f.file_bytes}, {"n_layer", f.n_layer}, {"n_head", f.n_head}, {"n_head_kv", f.n_head_kv},
        {"head_dim_k", f.head_dim_k}, {"head_dim_v", f.head_dim_v}, {"n_embd", f.n_embd},
        {"n_ctx_train", f.n_ctx_train}, {"n_vocab", f.n_vocab}, {"chat_template", model->has_chat_template()},
        {"kv_bytes_per_token_f16", kv16}, {"kv_bytes_per_token_f32", kv32}, {"hidden_bytes_per_token_f32", hid},
        {"devices", device_lines()}};
    if (json) {
        std::printf("%s\n", j.dump().c_str());
        return 0;
    }
    std::printf("model          %s\n", a.model.path.c_str());
    std::printf("architecture   %s%s%s\n", f.arch.c_str(), f.name.empty() ? "" : "  ", f.name.c_str());
    std::printf("parameters     %llu (%.2f MB file)\n", (unsigned long long) f.n_params, f.file_bytes / 1e6);
    std::printf("layers         %d\n", f.n_layer);
    std::printf("heads          %d query, %d KV (GQA %d:1)\n", f.n_head, f.n_head_kv, f.n_head_kv ? f.n_head / f.n_head_kv : 0);
    std::printf("head dim       %d (K) %d (V)\n", f.head_dim_k, f.head_dim_v);
    std::printf("embedding      %d\n", f.n_embd);
    std::printf("context        %d (training)\n", f.n_ctx_train);
    std::printf("vocab          %d%s\n", f.n_vocab, model->has_chat_template() ? "  (has chat template)" : "");
    std::printf("per token      KV cache %.0f B (f16) / %.0f B (f32); all-layer hidden states %.0f B (f32)\n", kv16, kv32, hid);
    std::printf("               KV row per layer: %d floats = [K;V] %d floats; hidden/KV(f32) = %.2fx\n",
                f.kv_row(), 2 * f.kv_row(), hid / kv32);
    for (const std::string & d : device_lines()) std::printf("device         %s\n", d.c_str());
    return 0;
}

KVLENS_COMMAND("info", "architecture and per-token memory facts (KV vs hidden states)", cmd_info);
