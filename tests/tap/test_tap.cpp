// Model-free: layer selections and the KvStore consumer (storage, rewind).
#include <gtest/gtest.h>

#include "kvlens/error.h"
#include "kvlens/tap.h"

using namespace kvlens;

TEST(ParseLayers, Forms) {
    EXPECT_EQ(parse_layers("all", 3), (std::vector<int>{0, 1, 2}));
    EXPECT_EQ(parse_layers("last:2", 5), (std::vector<int>{3, 4}));
    EXPECT_EQ(parse_layers("last4", 6), (std::vector<int>{2, 3, 4, 5}));
    EXPECT_EQ(parse_layers("5,0,3", 6), (std::vector<int>{0, 3, 5}));
    EXPECT_EQ(parse_layers("1-3, 5", 6), (std::vector<int>{1, 2, 3, 5}));
}

TEST(ParseLayers, Errors) {
    EXPECT_THROW(parse_layers("6", 6), Error);
    EXPECT_THROW(parse_layers("-1", 6), Error);
    EXPECT_THROW(parse_layers("1,1", 6), Error);
    EXPECT_THROW(parse_layers("1-2,2", 6), Error);
    EXPECT_THROW(parse_layers("3-1", 6), Error);
    EXPECT_THROW(parse_layers("last:0", 6), Error);
    EXPECT_THROW(parse_layers("last:7", 6), Error);
    EXPECT_THROW(parse_layers("", 6), Error);
    EXPECT_THROW(parse_layers("x", 6), Error);
    EXPECT_THROW(parse_layers("99999999999999", 6), Error);
}

TEST(KvStore, StoresRowsAndRewinds) {
    KvStore s({1, 4}, 2, 3);
    float k[2], v[2], h[3];
    for (int p = 0; p < 5; ++p) {
        k[0] = p, k[1] = -p, v[0] = 10 + p, v[1] = 20 + p, h[0] = h[1] = h[2] = 100 + p;
        s.on_kv(1, p, k, v, 2);
        s.on_kv(4, p, k, v, 2);
        s.on_kv(2, p, k, v, 2);  // not tapped: ignored
        s.on_hidden(kEmbeddingLayer, p, h, 3);
    }
    EXPECT_EQ(s.slot(4), 1);
    EXPECT_EQ(s.slot(2), -1);
    EXPECT_EQ(s.n_pos(0), 5);
    EXPECT_EQ(s.k(1, 3)[1], -3);
    EXPECT_EQ(s.v(0, 4)[0], 14);
    EXPECT_EQ(s.n_hidden_pos(s.hidden_slot_embedding()), 5);
    s.on_rewind(2);
    EXPECT_EQ(s.n_pos(0), 2);
    EXPECT_EQ(s.n_pos(1), 2);
    EXPECT_EQ(s.n_hidden_pos(s.hidden_slot_embedding()), 2);
    k[0] = 7;
    s.on_kv(1, 2, k, v, 2);
    EXPECT_EQ(s.n_pos(0), 3);
    EXPECT_EQ(s.k(0, 2)[0], 7);
    EXPECT_THROW(s.on_kv(1, 0, k, v, 3), Error);
}
