// stories260K (a real pretrained Llama) against an independent float64 re-implementation of llama2.c:
// greedy ids, logits rows and the K/V the tap captures.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "kvlens/model.h"
#include "kvlens/session.h"
#include "test_support.h"

using namespace kvlens;
using nlohmann::json;

namespace {

json load_reference() {
    std::ifstream in(test::shared_dir() + "/data/reference/stories260K_reference.json");
    return json::parse(in);
}

// max |a - b| / max |b| over one row
double rel_err(const float * a, const std::vector<double> & b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < b.size(); ++i) {
        num = std::max(num, std::fabs(a[i] - b[i]));
        den = std::max(den, std::fabs(b[i]));
    }
    return num / std::max(den, 1e-12);
}

SessionParams exact_params() {
    SessionParams p;
    p.n_ctx = 512;
    p.cache_type_k = p.cache_type_v = "f32";
    p.n_threads = 1;
    p.flash_attn = "off";  // CPU flash attention rounds Q to f16: fine for inference, not for a 1e-4 check
    return p;
}

class Stories : public ::testing::TestWithParam<const char *> {};

TEST_P(Stories, GreedyIdsLogitsAndKvMatchReference) {
    KVLENS_REQUIRE_FILE(test::stories_gguf());
    json ref = load_reference()[GetParam()];
    auto model = Model::load({test::stories_gguf()});
    const auto & f = model->facts();
    ASSERT_EQ(f.n_layer, 5);
    ASSERT_EQ(f.kv_row(), 32);

    // greedy ids
    std::vector<Token> in = ref["input_ids"].get<std::vector<Token>>();
    std::vector<Token> expect = ref["output_ids"].get<std::vector<Token>>();
    {
        Session s(model, exact_params());
        s.eval(in);
        std::vector<Token> got = in;
        // "steps" counts positions from BOS, as llama2.c's run.c does
        while ((int) got.size() < ref["steps"].get<int>() + 1) {
            Token t = s.sample();
            got.push_back(t);
            s.eval({t});
        }
        ASSERT_EQ(got.size(), expect.size());
        for (size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], expect[i]) << "first difference at position " << i;
    }

    // logits and K/V over the first 8 positions of the reference sequence
    Session s(model, exact_params());
    TapSpec spec;
    spec.layers = {0, 1, 2, 3, 4};
    s.set_tap(spec);
    KvStore store(spec.layers, f.kv_row());
    s.subscribe(&store);
    std::vector<Token> first8(expect.begin(), expect.begin() + 8);
    s.eval(first8, /*all_logits=*/true);
    for (int p = 0; p < 8; ++p) {
        auto row = ref["logits_first8_positions"][p].get<std::vector<double>>();
        EXPECT_LE(rel_err(s.logits(p), row), 1e-3) << "logits at position " << p;
    }
    // The GGUF keeps llama2.c's interleaved-pair RoPE layout (llama.cpp's NORM rope), so the tap's
    // [kv_head][head_dim] rows match "kv_cache_first8_positions" (llama2.c layout), not the HF one.
    for (int l = 0; l < 5; ++l) {
        ASSERT_EQ(store.n_pos(l), 8);
        for (int p = 0; p < 8; ++p) {
            auto k = ref["kv_cache_first8_positions"]["k"][l][p].get<std::vector<double>>();
            auto v = ref["kv_cache_first8_positions"]["v"][l][p].get<std::vector<double>>();
            EXPECT_LE(rel_err(store.k(l, p), k), 1e-4) << "K layer " << l << " pos " << p;
            EXPECT_LE(rel_err(store.v(l, p), v), 1e-4) << "V layer " << l << " pos " << p;
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Runs, Stories, ::testing::Values("unconditional", "prompted"));

}  // namespace
