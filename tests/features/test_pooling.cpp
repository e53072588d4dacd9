// Pooling math against a plain reference for every knob, output dimensions, bad knob values. Model-free:
// synthetic rows go straight into on_kv / on_hidden and into a KvStore.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "kvlens/error.h"
#include "kvlens/npy.h"
#include "kvlens/pooling.h"

using namespace kvlens;

namespace {

constexpr int kHeads = 3, kHeadDim = 4, kEmbd = 10, kPos = 7;
const std::vector<int> kLayers = {1, 3, 4};

// Deterministic synthetic row value for (what, layer, pos, index).
float val(int what, int layer, int pos, int i) {
    return std::sin(0.37f * (what * 1000 + layer * 100 + pos * 10) + 0.11f * i) + 0.01f * i;
}

struct Rows {
    std::vector<float> k, v, h;
};
Rows make_rows(int layer, int pos) {
    Rows r;
    for (int i = 0; i < kHeads * kHeadDim; ++i) {
        r.k.push_back(val(0, layer, pos, i));
        r.v.push_back(val(1, layer, pos, i));
    }
    for (int i = 0; i < kEmbd; ++i) r.h.push_back(val(2, layer, pos, i));
    return r;
}

// Feed positions [0, n) of every layer (0..5) into a consumer, layer by layer as a forward pass does.
void feed(TapConsumer & c, int n = kPos, int from = 0) {
    for (int pos = from; pos < n; ++pos) {
        for (int layer = 0; layer < 6; ++layer) {
            Rows r = make_rows(layer, pos);
            c.on_kv(layer, pos, r.k.data(), r.v.data(), kHeads * kHeadDim);
            c.on_hidden(layer, pos, r.h.data(), kEmbd);
        }
    }
}

PoolShape shape() { return {kHeads, kHeadDim, kEmbd}; }

// The plainest possible reference: one output element at a time, straight from the formula.
std::vector<float> by_hand(const PoolConfig & c, int start, int end) {
    bool hidden = c.source == EmbedSource::Hidden;
    std::vector<int> parts;
    if (hidden) parts = {2};
    else if (c.kv_part == KvPart::K) parts = {0};
    else if (c.kv_part == KvPart::V) parts = {1};
    else parts = {0, 1};
    auto elem = [&](int layer, int part, int j) {  // token-pooled, head-aggregated element j of a part
        auto at = [&](int pos) {
            if (hidden || c.head_agg == HeadAgg::Flatten) return (double) val(part, layer, pos, j);
            double s = 0;
            for (int h = 0; h < kHeads; ++h) s += val(part, layer, pos, h * kHeadDim + j);
            return s / kHeads;
        };
        if (c.pos_agg == PosAgg::First) return at(start);
        if (c.pos_agg == PosAgg::Last) return at(end - 1);
        double s = 0;
        for (int p = start; p < end; ++p) s += at(p);
        return c.pos_agg == PosAgg::Mean ? s / (end - start) : s;
    };
    int width = hidden ? kEmbd : c.head_agg == HeadAgg::Mean ? kHeadDim : kHeads * kHeadDim;
    auto layer_vec = [&](int layer) {
        std::vector<double> v;
        for (int part : parts) {
            for (int j = 0; j < width; ++j) v.push_back(elem(layer, part, j));
        }
        return v;
    };
    std::vector<double> out;
    if (c.layer_agg == LayerAgg::Flatten) {
        for (int l : kLayers) {
            auto v = layer_vec(l);
            out.insert(out.end(), v.begin(), v.end());
        }
    } else if (c.layer_agg == LayerAgg::Last) {
        out = layer_vec(kLayers.back());
    } else {
        out.assign(layer_vec(kLayers[0]).size(), 0.0);
        for (int l : kLayers) {
            auto v = layer_vec(l);
            for (size_t i = 0; i < v.size(); ++i) out[i] += v[i];
        }
        if (c.layer_agg == LayerAgg::Mean) {
            for (auto & x : out) x /= kLayers.size();
        }
    }
    if (c.normalize == Normalize::L2) {
        double n = 0;
        for (double x : out) n += x * x;
        for (auto & x : out) x /= std::sqrt(n);
    }
    return std::vector<float>(out.begin(), out.end());
}

void expect_near(const std::vector<float> & a, const std::vector<float> & b, const std::string & what) {
    ASSERT_EQ(a.size(), b.size()) << what;
    for (size_t i = 0; i < a.size(); ++i) {
        ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(b[i]))) << what << " element " << i;
    }
}

}  // namespace

TEST(Pooling, EveryKnobMatchesReference) {
    int n_cases = 0;
    for (auto src : {EmbedSource::Kv, EmbedSource::Hidden})
        for (auto part : {KvPart::K, KvPart::V, KvPart::KV})
            for (auto pos : {PosAgg::Mean, PosAgg::Sum, PosAgg::Last, PosAgg::First})
                for (auto heads : {HeadAgg::Mean, HeadAgg::Flatten})
                    for (auto lagg : {LayerAgg::Mean, LayerAgg::Sum, LayerAgg::Last, LayerAgg::Flatten})
                        for (auto norm : {Normalize::L2, Normalize::None}) {
                            PoolConfig c;
                            c.source = src;
                            c.kv_part = part;
                            c.pos_agg = pos;
                            c.head_agg = heads;
                            c.layer_agg = lagg;
                            c.normalize = norm;
                            const int start = 2, end = 6;  // pool only [2, 6): a prefix and a tail left out
                            KvPooler pooler(c, shape(), kLayers);
                            pooler.set_range(start, end);
                            feed(pooler);
                            KvStore store({0, 1, 2, 3, 4, 5}, kHeads * kHeadDim, kEmbd);
                            feed(store);
                            auto want = by_hand(c, start, end);
                            std::string what = c.describe();
                            expect_near(pooler.result(), want, "streaming " + what);
                            expect_near(pool_rows(store, c, shape(), kLayers, start, end), want, "rows " + what);
                            EXPECT_EQ((int) want.size(), pooler.dim()) << what;
                            EXPECT_EQ(pooler.n_pooled(), end - start);
                            ++n_cases;
                        }
    EXPECT_EQ(n_cases, 2 * 3 * 4 * 2 * 4 * 2);
}

TEST(Pooling, Dimensions) {
    PoolShape llama8b{8, 128, 4096};  // Llama-3.1-8B: 8 kv heads of 128
    PoolConfig paper = PoolConfig::preset("paper");
    EXPECT_EQ(pooled_dim(paper, llama8b, 4), 256);
    PoolConfig c = paper;
    c.kv_part = KvPart::K;
    EXPECT_EQ(pooled_dim(c, llama8b, 4), 128);
    c.head_agg = HeadAgg::Flatten;
    EXPECT_EQ(pooled_dim(c, llama8b, 4), 1024);
    c.layer_agg = LayerAgg::Flatten;
    EXPECT_EQ(pooled_dim(c, llama8b, 4), 4096);
    c.kv_part = KvPart::KV;
    EXPECT_EQ(pooled_dim(c, llama8b, 4), 8192);
    c.source = EmbedSource::Hidden;
    EXPECT_EQ(pooled_dim(c, llama8b, 4), 4 * 4096);
    c.layer_agg = LayerAgg::Last;
    EXPECT_EQ(pooled_dim(c, llama8b, 4), 4096);
    PoolConfig r = paper;
    r.source = EmbedSource::Random;  // random mirrors the KV vector
    EXPECT_EQ(pooled_dim(r, llama8b, 4), 256);
    PoolShape stories{4, 8, 64};  // stories260K: 4 kv heads of 8
    EXPECT_EQ(pooled_dim(paper, stories, 4), 16);
}

TEST(Pooling, ParseKnobsAndErrors) {
    PoolConfig c;
    c.set("kv-part", "v");
    c.set("pos", "last");
    c.set("heads", "flatten");
    c.set("layers", "0,2");
    c.set("layer-agg", "flatten");
    c.set("normalize", "none");
    c.set("source", "hidden");
    EXPECT_EQ(c.describe(), "source=hidden kv_part=v pos=last heads=flatten layers=0,2 layer_agg=flatten norm=none");
    EXPECT_THROW(c.set("pos", "median"), Error);
    EXPECT_THROW(c.set("kv-part", "q"), Error);
    EXPECT_THROW(c.set("heads", "max"), Error);
    EXPECT_THROW(c.set("layer-agg", "max"), Error);
    EXPECT_THROW(c.set("normalize", "l1"), Error);
    EXPECT_THROW(c.set("source", "logits"), Error);
    EXPECT_THROW(c.set("layers", ""), Error);
    EXPECT_THROW(c.set("colour", "red"), Error);
    EXPECT_THROW(PoolConfig::preset("nope"), Error);
    PoolConfig f = PoolConfig::from_knobs("paper", {{"pos", "last"}, {"heads", ""}});  // empty: keep the preset
    EXPECT_EQ(f.pos_agg, PosAgg::Last);
    EXPECT_EQ(f.head_agg, HeadAgg::Mean);
    EXPECT_THROW(PoolConfig::from_knobs("paper", {{"pos", "mode"}}), Error);
    EXPECT_EQ(PoolConfig::knobs().size(), 7u);
    try {
        parse_pos_agg("median");
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("mean|sum|last|first"), std::string::npos) << e.what();
    }
}

TEST(Pooling, RewindAndEmptyRange) {
    PoolConfig c;
    KvPooler p(c, shape(), kLayers);
    EXPECT_THROW(p.result(), Error);  // nothing pooled yet
    feed(p, 4);
    auto before = p.result();
    p.on_rewind(0);  // back to the start: forgets everything
    EXPECT_EQ(p.n_pooled(), 0);
    feed(p, 4);
    expect_near(p.result(), before, "after full rewind");
    p.on_rewind(2);  // inside the pooled range: cannot be undone on sums
    feed(p, 4, 2);
    EXPECT_THROW(p.result(), Error);
}

TEST(Pooling, RandomIsSeededAndKeyedByText) {
    PoolConfig c;
    c.source = EmbedSource::Random;
    auto a = random_embedding(c, 256, "hello");
    auto b = random_embedding(c, 256, "hello");
    auto d = random_embedding(c, 256, "world");
    EXPECT_EQ(a, b);
    EXPECT_NE(a, d);
    double n = 0;
    for (float x : a) n += x * x;
    EXPECT_NEAR(n, 1.0, 1e-5);
    c.seed = 7;
    EXPECT_NE(random_embedding(c, 256, "hello"), a);
}

TEST(Npy, RoundTrip) {
    std::vector<float> data(3 * 5);
    for (size_t i = 0; i < data.size(); ++i) data[i] = 0.5f * i - 2;
    std::string path = ::testing::TempDir() + "kvlens_test.npy";
    write_npy(path, data.data(), {3, 5});
    std::vector<size_t> shape;
    auto back = read_npy(path, shape);
    EXPECT_EQ(shape, (std::vector<size_t>{3, 5}));
    EXPECT_EQ(back, data);
    FILE * f = std::fopen(path.c_str(), "rb");
    ASSERT_TRUE(f);
    std::fseek(f, 0, SEEK_END);
    EXPECT_EQ(std::ftell(f), 128 + 15 * 4);  // header padded to 64 bytes
    std::fclose(f);
    write_npy(path, data.data(), {15});
    read_npy(path, shape);
    EXPECT_EQ(shape, (std::vector<size_t>{15}));
    std::remove(path.c_str());
}

// Sizes read from the file are checked against its length before anything is allocated (found by fuzz_npy: a
// version-2 header length of ~4 GB, and shapes asking for more values than the file holds).
TEST(Npy, SizesBeyondTheFileAreErrors) {
    const std::string path = ::testing::TempDir() + "kvlens_test_bad.npy";
    auto write = [&](const std::string & bytes) {
        FILE * f = std::fopen(path.c_str(), "wb");
        std::fwrite(bytes.data(), 1, bytes.size(), f);
        std::fclose(f);
    };
    std::vector<size_t> shape;
    write(std::string("\x93NUMPY\x02\x00\xff\xff\xff\xff", 12) + "{'descr': '<f4'}");
    EXPECT_THROW(read_npy(path, shape), Error);
    const std::string head = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 1000000), }";
    write(std::string("\x93NUMPY\x01\x00", 8) + char(head.size()) + char(0) + head + std::string(16, '\0'));
    EXPECT_THROW(read_npy(path, shape), Error);
    const std::string h2 = "{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }";
    write(std::string("\x93NUMPY\x01\x00", 8) + char(h2.size()) + char(0) + h2 + std::string(16, '\0'));  // 4 of 5 floats
    EXPECT_THROW(read_npy(path, shape), Error);
    std::remove(path.c_str());
}
