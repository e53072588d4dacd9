// KvClassifier: training on ggml-opt learns, GGUF round trip, mismatch errors (model-free).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

#include "ggml.h"
#include "gguf.h"
#include "kvlens/error.h"
#include "kvlens/probe.h"
#include "test_support.h"

using namespace kvlens;

namespace {

ProbeMeta meta_for_tests() {
    ProbeMeta m;
    m.model = {"qwen3", 6, 2, 32};
    m.window.seq_len = 8;
    m.window.layers = "last:2";
    m.short_cutoff = 12;
    return m;
}

// Labels from a known smooth rule of two coordinates (the other coordinates are noise), on 0..100.
void make_data(int n, int dim, std::vector<std::vector<float>> & X, std::vector<float> & y, uint64_t seed) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    X.assign(n, std::vector<float>(dim));
    y.resize(n);
    for (int i = 0; i < n; ++i) {
        for (auto & x : X[i]) x = 3.0f + 2.0f * nd(rng);  // off-centre, scaled: standardisation must cope
        const float z = 50.0f + 12.0f * (X[i][0] - 3.0f) + 8.0f * std::fabs(X[i][1] - 3.0f) - 6.0f;
        y[i] = std::min(100.0f, std::max(0.0f, z));
    }
}

double mse(const KvClassifier & c, const std::vector<std::vector<float>> & X, const std::vector<float> & y) {
    double s = 0;
    for (size_t i = 0; i < X.size(); ++i) s += std::pow(c.predict(X[i]) - y[i], 2);
    return s / X.size();
}

}  // namespace

TEST(Probe, TrainsAndPicksBestValidationEpoch) {
    std::vector<std::vector<float>> X, Xt;
    std::vector<float> y, yt;
    make_data(600, 10, X, y, 1);
    make_data(300, 10, Xt, yt, 2);
    ProbeTrainParams p;
    p.hidden = 32;
    p.lr = 3e-3;
    p.batch = 64;
    p.epochs = 60;
    std::vector<double> val;
    p.on_epoch = [&](int, double, double v) { val.push_back(v); };
    KvClassifier c = KvClassifier::train(X, y, meta_for_tests(), p);
    ASSERT_EQ((int) val.size(), 60);
    EXPECT_DOUBLE_EQ(c.meta().val_mse, *std::min_element(val.begin(), val.end()));
    EXPECT_EQ(c.meta().n_train + c.meta().n_val, 600);
    EXPECT_EQ(c.meta().n_val, 120);
    // the MLP must do far better on fresh data than a constant predictor of the mean (MSE = var(y))
    double m = 0, var = 0;
    for (float v : yt) m += v / yt.size();
    for (float v : yt) var += (v - m) * (v - m) / yt.size();
    EXPECT_LT(mse(c, Xt, yt), 0.35 * var) << "var " << var;
}

TEST(Probe, GroupsStayOnOneSide) {
    std::vector<std::vector<float>> X;
    std::vector<float> y;
    make_data(40, 4, X, y, 3);
    std::vector<int> g(40);
    for (int i = 0; i < 40; ++i) g[i] = i / 4;  // 10 groups of 4
    ProbeTrainParams p;
    p.hidden = 8;
    p.epochs = 2;
    p.val_frac = 0.3;
    KvClassifier c = KvClassifier::train(X, y, meta_for_tests(), p, g);
    EXPECT_EQ(c.meta().n_val, 12);  // 3 whole groups
}

TEST(Probe, SaveLoadRoundTrip) {
    test::TempDir d;
    std::vector<std::vector<float>> X;
    std::vector<float> y;
    make_data(100, 6, X, y, 4);
    ProbeTrainParams p;
    p.hidden = 16;
    p.lr = 1e-3;
    p.epochs = 5;
    ProbeMeta m = meta_for_tests();
    m.variant = "raw";
    m.switch_aware = true;
    KvClassifier c = KvClassifier::train(X, y, m, p);
    const std::string path = d.path + "/c.gguf";
    c.save(path);
    KvClassifier l = KvClassifier::load(path);
    for (auto & x : X) EXPECT_FLOAT_EQ(c.predict(x), l.predict(x));
    EXPECT_EQ(l.meta().window.describe(), m.window.describe());
    EXPECT_EQ(l.meta().variant, "raw");
    EXPECT_TRUE(l.meta().switch_aware);
    EXPECT_EQ(l.meta().short_cutoff, 12);
    EXPECT_TRUE(l.meta().model == m.model);
    EXPECT_NEAR(l.meta().val_mse, c.meta().val_mse, 1e-3 * (1 + c.meta().val_mse));
}

TEST(Probe, MismatchesAreClearErrors) {
    KvClassifier c = KvClassifier::constant(meta_for_tests(), 4, 10.0f, 8);
    EXPECT_FLOAT_EQ(c.predict(std::vector<float>{1, 2, 3, 4}), 10.0f);
    ModelFacts f;
    f.arch = "qwen3";
    f.n_layer = 6;
    f.n_head_kv = 2;
    f.head_dim_k = 32;
    EXPECT_NO_THROW(c.check_model(f));
    f.n_layer = 28;
    try {
        c.check_model(f);
        FAIL();
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("qwen3 L6 kv2x32"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("qwen3 L28 kv2x32"), std::string::npos) << e.what();
    }
    WindowConfig w = meta_for_tests().window;
    EXPECT_NO_THROW(c.check_window(w));
    w.seq_len = 9;
    EXPECT_THROW(c.check_window(w), Error);
    EXPECT_THROW(c.predict(std::vector<float>{1, 2, 3}), Error);  // wrong width
}

TEST(Probe, BadFilesAndInputs) {
    test::TempDir d;
    EXPECT_THROW(KvClassifier::load(d.path + "/missing.gguf"), Error);
    {
        std::ofstream o(d.path + "/junk.gguf");
        o << "not a gguf";
    }
    EXPECT_THROW(KvClassifier::load(d.path + "/junk.gguf"), Error);
    ProbeTrainParams p;
    EXPECT_THROW(KvClassifier::train({}, {}, meta_for_tests(), p), Error);
    EXPECT_THROW(KvClassifier::train({{1, 2}, {1}}, {0, 0}, meta_for_tests(), p), Error);
    EXPECT_THROW(KvClassifier::train({{1, 2}}, {0, 0}, meta_for_tests(), p), Error);
}

// ggml-opt asserts (aborts) on a NaN or negative weight decay and a NaN learning rate; an infinite or huge one used
// to train on NaN losses and end with "nothing to save". All are clear errors now.
TEST(Probe, NonFiniteOrDivergingTrainingIsAnError) {
    std::vector<std::vector<float>> X;
    std::vector<float> y;
    make_data(80, 6, X, y, 5);
    ProbeTrainParams p;
    p.hidden = 8;
    p.epochs = 3;
    for (double wd : {-1.0, (double) NAN, 2.0}) {
        ProbeTrainParams q = p;
        q.weight_decay = wd;
        EXPECT_THROW(KvClassifier::train(X, y, meta_for_tests(), q), Error) << "wd " << wd;
    }
    for (double lr : {(double) NAN, (double) INFINITY, 1e-60, -1.0}) {
        ProbeTrainParams q = p;
        q.lr = lr;
        EXPECT_THROW(KvClassifier::train(X, y, meta_for_tests(), q), Error) << "lr " << lr;
    }
    ProbeTrainParams q = p;
    q.val_frac = NAN;
    EXPECT_THROW(KvClassifier::train(X, y, meta_for_tests(), q), Error);
    q = p;
    q.lr = 1e30;  // finite, but the loss overflows at once
    try {
        KvClassifier::train(X, y, meta_for_tests(), q);
        ADD_FAILURE() << "a diverged training returned a classifier";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("not finite"), std::string::npos) << e.what();
    }
}

// gguf_get_val_* aborts when a key holds another type: every key the loader reads is type-checked first.
TEST(Probe, ClassifierKeyOfTheWrongTypeIsAnError) {
    test::TempDir d;
    std::vector<std::vector<float>> X;
    std::vector<float> y;
    make_data(60, 4, X, y, 6);
    ProbeTrainParams p;
    p.hidden = 4;
    p.epochs = 2;
    const std::string good = d.path + "/c.gguf";
    KvClassifier::train(X, y, meta_for_tests(), p).save(good);
    int n_keys = 0;
    for (int i = 0;; ++i) {
        ggml_context * ctx = nullptr;
        gguf_context * g = gguf_init_from_file(good.c_str(), {false, &ctx});
        ASSERT_NE(g, nullptr);
        if (i >= gguf_get_n_kv(g)) {
            gguf_free(g);
            ggml_free(ctx);
            break;
        }
        const std::string k = gguf_get_key(g, i);
        if (k.rfind("kvlens.probe.", 0) != 0) {
            gguf_free(g);
            ggml_free(ctx);
            continue;
        }
        // a copy (metadata, then the tensors with their data) where a string key becomes an int and any other a
        // uint32 (the case: the version as uint32)
        gguf_context * w = gguf_init_empty();
        gguf_set_kv(w, g);
        for (int64_t t = 0; t < gguf_get_n_tensors(g); ++t) gguf_add_tensor(w, ggml_get_tensor(ctx, gguf_get_tensor_name(g, t)));
        if (gguf_get_kv_type(g, i) == GGUF_TYPE_STRING) gguf_set_val_i32(w, k.c_str(), 1);
        else gguf_set_val_u32(w, k.c_str(), 1);
        const std::string bad = d.path + "/bad.gguf";
        ASSERT_TRUE(gguf_write_to_file(w, bad.c_str(), false));
        gguf_free(w);
        gguf_free(g);
        ggml_free(ctx);
        try {
            KvClassifier::load(bad);
            ADD_FAILURE() << k << " of the wrong type was accepted";
        } catch (const Error & e) {
            EXPECT_NE(std::string(e.what()).find(k), std::string::npos) << e.what();
        }
        ++n_keys;
    }
    EXPECT_GE(n_keys, 15);
}

// A crafted classifier GGUF whose tensor claims more data than any file holds: gguf would allocate it (ggml
// aborts on the failed allocation) before finding the file short. Found by tests/fuzz/fuzz_classifier.
TEST(Probe, ClassifierWithTensorDataPastTheFileIsAnError) {
    test::TempDir d;
    auto u32 = [](std::string & b, uint32_t v) { b.append(reinterpret_cast<const char *>(&v), 4); };
    auto u64 = [](std::string & b, uint64_t v) { b.append(reinterpret_cast<const char *>(&v), 8); };
    auto str = [&](std::string & b, const std::string & s) { u64(b, s.size()); b += s; };
    std::string b = "GGUF";
    u32(b, 3);
    u64(b, 1);  // tensors
    u64(b, 1);  // keys
    str(b, "general.architecture");
    u32(b, 8);  // string
    str(b, "kvlens-probe");
    str(b, "w1");
    u32(b, 2);                 // dims
    u64(b, uint64_t(1) << 30);  // 2^30 x 2^20 f32: 4 PiB
    u64(b, uint64_t(1) << 20);
    u32(b, 0);  // f32
    u64(b, 0);  // offset
    b.append((32 - b.size() % 32) % 32, '\0');
    b.append(64, '\0');
    const std::string path = d.path + "/huge.gguf";
    std::ofstream(path, std::ios::binary) << b;
    try {
        KvClassifier::load(path);
        ADD_FAILURE() << "loaded a classifier whose tensor is larger than its file";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("truncated or corrupt"), std::string::npos) << e.what();
    }
}
