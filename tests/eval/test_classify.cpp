// The MTEB classification protocol on synthetic embeddings: separable data scores 1, noise scores chance,
// undersampling keeps samples_per_label per label, metrics match hand counts, bad dataset folders fail clearly.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "kvlens/error.h"
#include "kvlens/probe_eval.h"

using namespace kvlens;
using namespace kvlens::probe;
namespace fs = std::filesystem;

namespace {

// n points per class around well-separated centres (class c at +8 on axis c), plus Gaussian noise.
void blobs(int n_classes, int per_class, int dim, float noise, uint64_t seed, std::vector<float> & X,
           std::vector<int> & y) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> g(0, 1);
    for (int i = 0; i < per_class; ++i) {
        for (int c = 0; c < n_classes; ++c) {
            for (int j = 0; j < dim; ++j) X.push_back((j == c ? 8.f : 0.f) + noise * g(rng));
            y.push_back(c);
        }
    }
}

std::string tmpdir(const std::string & name) {
    fs::path p = fs::path(::testing::TempDir()) / ("kvlens_classify_" + name);
    fs::remove_all(p);
    fs::create_directories(p);
    return p.string();
}

void write(const std::string & path, const std::string & text) { std::ofstream(path) << text; }

}  // namespace

TEST(Metrics, AccuracyAndMacroF1) {
    std::vector<int> t = {0, 0, 1, 1, 2, 2};
    std::vector<int> p = {0, 1, 1, 1, 0, 2};
    EXPECT_DOUBLE_EQ(accuracy(t, p), 4.0 / 6);
    // class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    EXPECT_NEAR(macro_f1(t, p), (0.5 + 0.8 + 2.0 / 3) / 3, 1e-12);
    // a label only predicted counts (f1 0), like scikit-learn
    EXPECT_NEAR(macro_f1({0, 0}, {0, 1}), (2.0 / 3 + 0) / 2, 1e-12);
    EXPECT_THROW(accuracy({}, {}), Error);
}

TEST(Protocol, UndersamplePerLabel) {
    std::vector<int> y;
    for (int i = 0; i < 100; ++i) y.push_back(i % 4 == 0 ? 1 : 0);  // 75 of label 0, 25 of label 1
    Protocol p;
    auto exps = undersample(y, p);
    ASSERT_EQ((int) exps.size(), 10);
    for (auto & e : exps) {
        std::map<int, int> c;
        for (int i : e) c[y[i]]++;
        EXPECT_EQ(c[0], 8);
        EXPECT_EQ(c[1], 8);
    }
    EXPECT_NE(exps[0], exps[1]);          // a fresh shuffle per experiment
    EXPECT_EQ(undersample(y, p), exps);   // deterministic in the seed
    auto need = needed_train_rows(y, p);
    EXPECT_TRUE(std::is_sorted(need.begin(), need.end()));
    EXPECT_GE((int) need.size(), 16);
    p.samples_per_label = 0;  // whole split
    EXPECT_EQ(undersample(y, p)[0].size(), y.size());
    EXPECT_EQ(mteb_protocol("emotion").samples_per_label, 16);
    EXPECT_EQ(mteb_protocol("amazon_counterfactual_en").samples_per_label, 32);
    EXPECT_EQ(mteb_protocol("banking77").samples_per_label, 8);
}

TEST(Protocol, StratifiedTestSubsample) {
    std::vector<int> y;
    for (int i = 0; i < 1000; ++i) y.push_back(i < 800 ? 0 : 1);
    Protocol p;
    p.max_test = 100;
    auto rows = test_rows(y, p);
    ASSERT_EQ(rows.size(), 100u);
    int ones = 0;
    for (int i : rows) ones += y[i];
    EXPECT_EQ(ones, 20);
    p.max_test = 0;
    EXPECT_EQ(test_rows(y, p).size(), 1000u);
}

TEST(Protocol, SeparableScoresOneNoiseScoresChance) {
    std::vector<float> Xtr, Xte;
    std::vector<int> ytr, yte;
    blobs(5, 40, 12, 0.5f, 1, Xtr, ytr);
    blobs(5, 60, 12, 0.5f, 2, Xte, yte);
    Matrix tr{Xtr.data(), (int) ytr.size(), 12}, te{Xte.data(), (int) yte.size(), 12};
    Result r = run(tr, ytr, te, yte, Protocol{});
    EXPECT_EQ(r.acc.size(), 10u);
    EXPECT_EQ(r.n_train, 40);  // 8 per label x 5
    EXPECT_EQ(r.n_test, 300);
    EXPECT_GT(r.acc_mean, 0.99);
    EXPECT_GT(r.f1_mean, 0.99);

    // labels unrelated to the features: near chance (0.2), with spread across experiments
    std::mt19937_64 rng(3);
    for (auto & l : ytr) l = (int) (rng() % 5);
    for (auto & l : yte) l = (int) (rng() % 5);
    Result n = run(tr, ytr, te, yte, Protocol{});
    EXPECT_LT(n.acc_mean, 0.35);
    EXPECT_GT(n.acc_std, 0.0);
}

TEST(Protocol, BinaryWithLogReg) {
    std::vector<float> X = {0, 0, 0, 1, 1, 0, 1, 1, 5, 5, 5, 6, 6, 5, 6, 6};
    std::vector<int> y = {0, 0, 0, 0, 1, 1, 1, 1};
    Matrix m{X.data(), 8, 2};
    LogReg lr;
    lr.fit(m, {0, 1, 2, 3, 4, 5, 6, 7}, y, 1.0, 0.01);
    float a[2] = {0.5f, 0.5f}, b[2] = {5.5f, 5.5f};
    EXPECT_EQ(lr.predict(a, 2), 0);
    EXPECT_EQ(lr.predict(b, 2), 1);
}

TEST(Dataset, LoadsAndRejectsBadFolders) {
    std::string d = tmpdir("ok");
    write(d + "/labels.json", "[\"neg\", \"pos\"]");
    write(d + "/train.jsonl", "{\"text\": \"bad\", \"label\": 0}\n\n{\"text\": \"good\", \"label\": 1}\n");
    write(d + "/test.jsonl", "{\"text\": \"fine\", \"label\": 1}\n");
    Dataset ds = load_dataset(d);
    EXPECT_EQ(ds.name, "kvlens_classify_ok");
    EXPECT_EQ(ds.label_names.size(), 2u);
    ASSERT_EQ(ds.train.size(), 2u);
    EXPECT_EQ(ds.train[1].text, "good");
    EXPECT_EQ(ds.train[1].label, 1);
    EXPECT_EQ(list_datasets(fs::path(d).parent_path().string()).empty(), false);

    std::string m = tmpdir("missing");
    write(m + "/train.jsonl", "{\"text\": \"a\", \"label\": 0}\n");
    try {
        load_dataset(m);
        FAIL() << "no error for a folder without test.jsonl";
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("test.jsonl"), std::string::npos) << e.what();
    }
    EXPECT_THROW(load_dataset(m + "/nope"), Error);

    std::string bad = tmpdir("badlabel");
    write(bad + "/labels.json", "[\"only\"]");
    write(bad + "/train.jsonl", "{\"text\": \"a\", \"label\": 3}\n");
    write(bad + "/test.jsonl", "{\"text\": \"a\", \"label\": 0}\n");
    EXPECT_THROW(load_dataset(bad), Error);
}

TEST(Dataset, JsonlErrorsNameTheLine) {
    std::string d = tmpdir("jsonl");
    auto expect_error = [&](const std::string & body, bool need_label, const std::string & want) {
        write(d + "/x.jsonl", body);
        try {
            read_text_jsonl(d + "/x.jsonl", need_label);
            FAIL() << "no error for: " << body;
        } catch (const Error & e) {
            EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
        }
    };
    expect_error("{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", false, "x.jsonl:2: missing \"text\"");
    expect_error("{\"text\": \"\"}\n", false, ":1: empty \"text\"");
    expect_error("{\"text\": \"a\"}\n", true, ":1: missing \"label\"");
    expect_error("{\"text\": \"a\", \"label\": \"x\"}\n", true, ":1: \"label\" is not an integer");
    // beyond int: it was cast to int (2^31 -> a negative label that passed the labels.json check)
    expect_error("{\"text\": \"a\", \"label\": 2147483648}\n", true, ":1: \"label\" is not an integer");
    expect_error("{\"text\": \"a\", \"label\": 18446744073709551615}\n", true, ":1: \"label\" is not an integer");
    expect_error("\n\n{oops\n", false, ":3: not valid JSON");
    expect_error("[1,2]\n", false, ":1: expected a JSON object");
    write(d + "/y.jsonl", "{\"text\": \"no label is fine\"}\n");
    EXPECT_EQ(read_text_jsonl(d + "/y.jsonl", false)[0].label, -1);
}
