// Embeddings on stories260K: batched (several sequences per llama_decode) equals one text at a time through a
// Session, for KV and hidden sources; texts never see each other; length limits; CLI errors.
#include <gtest/gtest.h>

#include <cmath>

#include "kvlens/embed.h"
#include "kvlens/error.h"
#include "kvlens/npy.h"
#include "test_support.h"

using namespace kvlens;

namespace {

std::vector<std::string> texts() {
    return {"Once upon a time there was a little girl named Lily.",
            "The dog ran.",
            "Tom and his mom went to the park to play on the swings and the slide, and they had a lot of fun.",
            "She was happy.",
            "One day, a big bird flew over the house and saw a shiny red ball in the garden near the tree.",
            "Ben liked cake.",
            "The sun was bright and warm."};
}

std::shared_ptr<Model> stories() {
    ModelParams mp;
    mp.path = test::stories_gguf();
    return Model::load(mp);
}

void expect_close(const float * a, const float * b, int n, double tol, const std::string & what) {
    for (int i = 0; i < n; ++i) ASSERT_NEAR(a[i], b[i], tol) << what << " element " << i;
}

}  // namespace

TEST(EmbedModel, BatchedEqualsOneByOne) {
    KVLENS_REQUIRE_FILE(test::stories_gguf());
    auto model = stories();
    const char * configs[][4] = {{"kv", "mean", "mean", "auto"},
                                 {"kv", "mean", "mean", "off"},  // V cache transposed without flash attention
                                 {"kv", "last", "flatten", "on"},
                                 {"hidden", "mean", "flatten", "auto"},
                                 {"kv", "sum", "last", "off"}};
    for (auto & c : configs) {
        EmbedParams ep;
        ep.pool.set("source", c[0]);
        ep.pool.set("pos", c[1]);
        ep.pool.set("layer-agg", c[2]);
        if (std::string(c[0]) == "hidden") ep.pool.set("layers", "2,4");  // includes the last layer
        ep.batch.n_ctx = 64;
        ep.batch.n_batch = 64;  // forces several decodes of several texts each
        ep.batch.n_seq = 3;
        ep.batch.n_threads = 1;
        ep.batch.flash_attn = c[3];
        Embedder emb(model, ep);
        auto all = texts();
        EmbedRun r = emb.embed(all);
        ASSERT_EQ(r.n_texts, (int) all.size());
        EXPECT_GT(r.stats.n_decodes, 2) << "the test should pack several decodes";
        for (size_t i = 0; i < all.size(); ++i) {
            auto one = emb.embed_one(all[i]);
            ASSERT_EQ((int) one.size(), r.dim);
            expect_close(r.row((int) i), one.data(), r.dim, 1e-4, ep.pool.describe() + " text " + std::to_string(i));
        }
        // a text's vector does not depend on its batch neighbours
        EmbedRun alone = emb.embed({all[2]});
        expect_close(alone.row(0), r.row(2), r.dim, 1e-4, "alone vs packed");
    }
}

TEST(EmbedModel, DimensionsOnStories) {
    KVLENS_REQUIRE_FILE(test::stories_gguf());
    auto model = stories();  // 5 layers, 4 kv heads x 8, n_embd 64
    struct Case {
        std::vector<std::pair<std::string, std::string>> knobs;
        int dim;
    } cases[] = {{{}, 16},
                 {{{"kv-part", "k"}}, 8},
                 {{{"heads", "flatten"}}, 64},
                 {{{"layer-agg", "flatten"}}, 64},
                 {{{"layers", "all"}, {"layer-agg", "flatten"}, {"heads", "flatten"}}, 320},
                 {{{"source", "hidden"}}, 64},
                 {{{"source", "hidden"}, {"layer-agg", "flatten"}}, 256},
                 {{{"source", "random"}}, 16}};
    for (auto & c : cases) {
        EmbedParams ep;
        for (auto & [k, v] : c.knobs) ep.pool.set(k, v);
        Embedder emb(model, ep);
        EXPECT_EQ(emb.dim(), c.dim) << ep.pool.describe();
        EmbedRun r = emb.embed({"The cat sat.", "A dog."});
        EXPECT_EQ(r.dim, c.dim);
        double n = 0;
        for (int i = 0; i < r.dim; ++i) n += r.row(1)[i] * r.row(1)[i];
        EXPECT_NEAR(n, 1.0, 1e-4) << ep.pool.describe();
    }
}

TEST(EmbedModel, LengthLimitsAndBadInput) {
    KVLENS_REQUIRE_FILE(test::stories_gguf());
    auto model = stories();
    EmbedParams ep;
    ep.batch.n_ctx = 8;
    Embedder emb(model, ep);
    std::string longer = "Once upon a time there was a little girl named Lily who liked to play.";
    EXPECT_THROW(emb.embed({"Hi.", longer}), Error);
    EXPECT_THROW(emb.embed({"Hi.", ""}), Error);
    ep.truncate = true;
    Embedder cut(model, ep);
    EmbedRun r = cut.embed({longer});
    EXPECT_EQ(r.n_truncated, 1);
    EXPECT_EQ(r.stats.n_tokens, 8);
    ep.pool.set("layers", "7");  // stories260K has layers 0..4
    EXPECT_THROW(Embedder(model, ep), Error);
}

TEST(EmbedModel, CliWritesNpyAndRejectsBadInput) {
    KVLENS_REQUIRE_FILE(test::stories_gguf());
    test::TempDir tmp;
    std::string bin = test::kvlens_bin(), m = test::stories_gguf();
    std::string jsonl = tmp.path + "/in.jsonl", npy = tmp.path + "/out.npy", out;
    {
        FILE * f = std::fopen(jsonl.c_str(), "w");
        std::fprintf(f, "{\"text\": \"The cat sat.\"}\n{\"text\": \"A dog ran.\"}\n{\"text\": \"Lily smiled.\"}\n");
        std::fclose(f);
    }
    ASSERT_EQ(test::run(bin + " embed -m " + m + " -f " + jsonl + " -o " + npy + " -t 1", &out), 0) << out;
    std::vector<size_t> shape;
    read_npy(npy, shape);
    EXPECT_EQ(shape, (std::vector<size_t>{3, 16}));
    EXPECT_NE(test::run(bin + " embed -m " + m + " -p '' ", &out), 0);
    EXPECT_NE(out.find("empty"), std::string::npos) << out;
    EXPECT_NE(test::run(bin + " embed -m " + m + " -p hi --pos median", &out), 0);
    EXPECT_NE(out.find("mean|sum|last|first"), std::string::npos) << out;
    {
        FILE * f = std::fopen(jsonl.c_str(), "w");
        std::fprintf(f, "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
        std::fclose(f);
    }
    EXPECT_NE(test::run(bin + " embed -m " + m + " -f " + jsonl, &out), 0);
    EXPECT_NE(out.find(":2: missing \"text\""), std::string::npos) << out;

    // bench classify: a dataset folder without its files, an unknown source
    std::string ds = tmp.path + "/sets/broken";
    ASSERT_EQ(test::run("mkdir -p " + ds + " && echo '{\"text\": \"a\", \"label\": 0}' > " + ds + "/train.jsonl"), 0);
    EXPECT_NE(test::run(bin + " bench classify -m " + m + " --data " + tmp.path + "/sets --sets broken", &out), 0);
    EXPECT_NE(out.find("test.jsonl"), std::string::npos) << out;
    EXPECT_NE(test::run(bin + " bench classify -m " + m + " --data " + tmp.path + "/sets --sources kv,logits", &out), 0);
    EXPECT_NE(out.find("unknown --source 'logits'"), std::string::npos) << out;
}
