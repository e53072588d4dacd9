// kvlens-train's loop on a tiny model (1 layer, width 32): the spike guard rolls the weights back and lowers the
// learning rate when the loss jumps, the lowered scale is kept in the checkpoint, and a resumed run uses it; a
// model grown by --grow-layers starts with the same function and --train-layers leaves the old weights alone.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "llama.h"

// The trainer's library (tools/train, target kvlens_train).
#include "data.h"
#include "host_adamw.h"
#include "reasoner.h"
#include "train.h"
#include "vocab.h"

using namespace kvlens::train;
namespace fs = std::filesystem;

static TrainArgs tiny_run(const std::string & dir, int64_t steps) {
    TrainArgs a;
    a.ckpt_dir = dir;
    a.out = dir + "/m.gguf";
    a.hp.n_layer = 1;
    a.hp.n_embd = 32;
    a.hp.n_head = 2;
    a.hp.n_head_kv = 1;
    a.hp.head_dim = 16;
    a.hp.n_ff = 64;
    a.batch_rows = 4;
    a.steps = steps;
    a.val_every = 100000;
    a.val_per_level = 1;
    a.log_every = 100000;
    return a;
}

TEST(TrainLoop, SpikeGuardRestoresAndTheLowerLrSurvivesAResume) {
    const std::string dir = (fs::temp_directory_path() / "kvlens_train_guard").string();
    fs::remove_all(dir);
    fs::create_directories(dir);
    // Factor 0.5: a falling loss (the last 20 steps above half the 200 before) already counts as a spike, so the
    // guard must fire as soon as it can: at step 220, with snapshots of steps 100 and 200 taken.
    TrainArgs a = tiny_run(dir, 240);
    a.spike_factor = 0.5;
    testing::internal::CaptureStderr();
    EXPECT_EQ(run_train(a), 0);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("spike guard: "), std::string::npos) << err;
    EXPECT_NE(err.find("weights of step 100 restored, lr scale now 0.700 (restore 1)"), std::string::npos) << err;
    std::map<std::string, int64_t> st;
    read_hparams(dir + "/ckpt-240.gguf", &st);
    EXPECT_EQ(st["kvlens.train.step"], 240);
    EXPECT_EQ(st["kvlens.train.lr_scale_ppm"], 700000);

    TrainArgs b = tiny_run(dir, 250);  // resume without the guard: the scale comes from the checkpoint
    testing::internal::CaptureStderr();
    EXPECT_EQ(run_train(b), 0);
    const std::string err2 = testing::internal::GetCapturedStderr();
    EXPECT_NE(err2.find("resumed from"), std::string::npos) << err2;
    EXPECT_NE(err2.find("lr scale 0.700"), std::string::npos) << err2;
    EXPECT_EQ(err2.find("spike guard: "), std::string::npos) << err2;
    fs::remove_all(dir);
}

TEST(TrainLoop, ScheduleWarmsUpDecaysAndRestartsItsCosineForALaterChunk) {
    TrainArgs a;
    a.lr = 1e-3;
    a.warmup = 100;
    a.steps = 1100;
    LrState s;
    EXPECT_DOUBLE_EQ(scheduled_lr(a, s, 0), 1e-5);     // warm-up: (t + 1) / warmup
    EXPECT_DOUBLE_EQ(scheduled_lr(a, s, 100), 1e-3);   // peak after the warm-up
    EXPECT_NEAR(scheduled_lr(a, s, 600), 0.55e-3, 1e-12);  // half-way: 0.1 + 0.9 * 0.5
    EXPECT_NEAR(scheduled_lr(a, s, 1100), 1e-4, 1e-12);    // 10% at --steps
    EXPECT_NEAR(scheduled_lr(a, s, 5000), 1e-4, 1e-12);    // and after

    a.cosine_from = 600;  // a later chunk's own decay: the peak again at 600, 10% at --steps
    EXPECT_DOUBLE_EQ(scheduled_lr(a, s, 600), 1e-3);
    EXPECT_NEAR(scheduled_lr(a, s, 850), 0.55e-3, 1e-12);
    EXPECT_NEAR(scheduled_lr(a, s, 1100), 1e-4, 1e-12);

    s.rewarm_from = 600;  // resumed at 600: a 50-step ramp, then the guard's scale
    s.rewarm_until = 650;
    s.scale = 0.7;
    EXPECT_NEAR(scheduled_lr(a, s, 600), 1e-3 * 0.7 / 50, 1e-12);
    EXPECT_NEAR(scheduled_lr(a, s, 624), 1e-3 * 0.7 * 25 / 50 * (0.1 + 0.45 * (1 + std::cos(M_PI * 24 / 500))), 1e-12);
    EXPECT_NEAR(scheduled_lr(a, s, 850), 0.55e-3 * 0.7, 1e-12);
}

// The last position's logits of `text`'s tokens under llama.cpp (the file as inference reads it).
static std::vector<float> llama_logits(const std::string & path, const std::vector<int32_t> & toks) {
    llama_model_params mp = llama_model_default_params();
    llama_model * m = llama_model_load_from_file(path.c_str(), mp);
    if (!m) return {};
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_threads = 1;
    llama_context * c = llama_init_from_model(m, cp);
    std::vector<llama_token> t(toks.begin(), toks.end());
    std::vector<float> out;
    if (c && llama_decode(c, llama_batch_get_one(t.data(), (int32_t) t.size())) == 0) {
        const float * l = llama_get_logits_ith(c, -1);
        out.assign(l, l + llama_vocab_n_tokens(llama_model_get_vocab(m)));
    }
    if (c) llama_free(c);
    llama_model_free(m);
    return out;
}

static std::vector<uint8_t> tensor_bytes(const std::string & path, const std::string & name) {
    ggml_backend_t be = ggml_backend_cpu_init();
    HParams hp = read_hparams(path, nullptr);
    Weights w;
    w.create(hp, be);
    load_weights(w, path);
    std::vector<uint8_t> b;
    for (ggml_tensor * t : w.all)
        if (name == ggml_get_name(t)) {
            b.resize(ggml_nbytes(t));
            ggml_backend_tensor_get(t, b.data(), 0, b.size());
        }
    w.free();
    ggml_backend_free(be);
    return b;
}

TEST(TrainLoop, GrownModelStartsWithTheSameFunctionAndTrainsOnlyItsNewBlocks) {
    const std::string dir = (fs::temp_directory_path() / "kvlens_train_grow").string();
    fs::remove_all(dir);
    fs::create_directories(dir + "/base");
    TrainArgs a = tiny_run(dir + "/base", 30);
    testing::internal::CaptureStderr();
    ASSERT_EQ(run_train(a), 0);
    testing::internal::GetCapturedStderr();

    TrainArgs g = tiny_run(dir + "/grown", 30);
    g.init_from = a.out;
    g.grow_layers = 2;
    g.train_layers_from = 1;  // the tiny base has one block
    g.host_adamw = true;
    testing::internal::CaptureStderr();
    ASSERT_EQ(run_train(g), 0);
    const std::string err = testing::internal::GetCapturedStderr();
    EXPECT_NE(err.find("2 identity blocks on top of its 1"), std::string::npos) << err;
    EXPECT_EQ(read_hparams(dir + "/grown/ckpt-0.gguf", nullptr).n_layer, 3);

    llama_backend_init();
    const std::vector<int32_t> toks = {10, 52, 43, 60, 17, 99, 3, 200, 45};
    const std::vector<float> base = llama_logits(a.out, toks), start = llama_logits(dir + "/grown/ckpt-0.gguf", toks),
                             end = llama_logits(g.out, toks);
    ASSERT_FALSE(base.empty());
    ASSERT_EQ(base.size(), start.size());
    ASSERT_EQ(base.size(), end.size());
    double diff_start = 0, diff_end = 0;
    for (size_t i = 0; i < base.size(); ++i) {
        diff_start = std::max(diff_start, (double) std::fabs(base[i] - start[i]));
        diff_end = std::max(diff_end, (double) std::fabs(base[i] - end[i]));
    }
    EXPECT_LT(diff_start, 1e-5);  // identity blocks: the base model's logits (up to float rounding of the graph)
    EXPECT_GT(diff_end, 1e-4);   // training moved the new blocks
    // the base's block, embedding and head are untouched by the run; a new block's output projection moved
    for (const char * name : {"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "token_embd.weight", "output.weight", "output_norm.weight"})
        EXPECT_EQ(tensor_bytes(a.out, name), tensor_bytes(g.out, name)) << name;
    const std::vector<uint8_t> wo = tensor_bytes(g.out, "blk.2.attn_output.weight");
    EXPECT_NE(wo, std::vector<uint8_t>(wo.size(), 0)) << "the new block's output projection is still zero";
    fs::remove_all(dir);
}
