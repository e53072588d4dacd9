// kvlens-train's loop on a tiny model (1 layer, width 32): the spike guard rolls the weights back and lowers the
// learning rate when the loss jumps, the lowered scale is kept in the checkpoint, and a resumed run uses it.
#include <gtest/gtest.h>

#include <filesystem>

// The trainer's sources (tools/train is an app, not part of the library).
#include "../../tools/train/data.cpp"
#include "../../tools/train/host_adamw.cpp"
#include "../../tools/train/reasoner.cpp"
#include "../../tools/train/train.cpp"
#include "../../tools/train/vocab.cpp"

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
