// MTEB-style classification probe: dataset folders, undersampling, liblinear logistic regression, metrics.
#include "kvlens/probe_eval.h"

#include <linear.h>


#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>

#include "kvlens/error.h"

namespace kvlens::probe {

namespace fs = std::filesystem;

std::vector<LabeledText> read_text_jsonl(const std::string & path, bool require_label) {
    std::ifstream f(path);
    if (!f) throw Error("cannot read " + path);
    std::vector<LabeledText> out;
    std::string line;
    int ln = 0;
    while (std::getline(f, line)) {
        ++ln;
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        const std::string where = path + ":" + std::to_string(ln) + ": ";
        nlohmann::json j;
        try {
            j = nlohmann::json::parse(line);
        } catch (const std::exception & e) {
            throw Error(where + "not valid JSON");
        }
        if (!j.is_object()) throw Error(where + "expected a JSON object");
        auto t = j.find("text");
        if (t == j.end()) throw Error(where + "missing \"text\"");
        if (!t->is_string()) throw Error(where + "\"text\" is not a string");
        LabeledText r;
        r.text = t->get<std::string>();
        if (r.text.empty()) throw Error(where + "empty \"text\"");
        auto l = j.find("label");
        if (l != j.end()) {
            if (!l->is_number_integer() || l->get<int64_t>() < 0 || l->get<int64_t>() > INT32_MAX ||
                (l->is_number_unsigned() && l->get<uint64_t>() > uint64_t(INT32_MAX))) {
                throw Error(where + "\"label\" is not an integer in [0, 2^31)");
            }
            r.label = l->get<int>();
        } else if (require_label) {
            throw Error(where + "missing \"label\"");
        }
        out.push_back(std::move(r));
    }
    return out;
}

Dataset load_dataset(const std::string & dir) {
    if (!fs::is_directory(dir)) throw Error("dataset folder not found: " + dir);
    for (const char * f : {"train.jsonl", "test.jsonl", "labels.json"}) {
        if (!fs::exists(fs::path(dir) / f)) {
            throw Error("dataset folder " + dir + " has no " + f + " (expected train.jsonl, test.jsonl, labels.json)");
        }
    }
    Dataset d;
    d.name = fs::path(dir).filename().string();
    if (d.name.empty()) d.name = fs::path(dir).parent_path().filename().string();
    std::ifstream lf(fs::path(dir) / "labels.json");
    try {
        nlohmann::json j = nlohmann::json::parse(lf);
        if (!j.is_array() || j.empty()) throw Error("");
        for (auto & x : j) d.label_names.push_back(x.get<std::string>());
    } catch (const std::exception &) {
        throw Error(dir + "/labels.json: expected a non-empty JSON list of label names");
    }
    d.train = read_text_jsonl((fs::path(dir) / "train.jsonl").string(), true);
    d.test = read_text_jsonl((fs::path(dir) / "test.jsonl").string(), true);
    for (auto * split : {&d.train, &d.test}) {
        const char * name = split == &d.train ? "train" : "test";
        if (split->empty()) throw Error(dir + ": the " + name + " split is empty");
        for (auto & r : *split) {
            if (r.label >= (int) d.label_names.size()) {
                throw Error(dir + ": " + name + " label " + std::to_string(r.label) + " is not in labels.json (" +
                            std::to_string(d.label_names.size()) + " labels)");
            }
        }
    }
    return d;
}

std::vector<std::string> list_datasets(const std::string & root) {
    if (!fs::is_directory(root)) throw Error("not a folder: " + root);
    std::vector<std::string> out;
    for (auto & e : fs::directory_iterator(root)) {
        if (e.is_directory() && fs::exists(e.path() / "train.jsonl")) out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

Protocol mteb_protocol(const std::string & name) {
    Protocol p;
    if (name.rfind("amazon_counterfactual", 0) == 0) p.samples_per_label = 32;
    else if (name == "emotion") p.samples_per_label = 16;
    return p;
}

std::vector<std::vector<int>> undersample(const std::vector<int> & y, const Protocol & p) {
    std::vector<std::vector<int>> out;
    std::vector<int> idx(y.size());
    std::iota(idx.begin(), idx.end(), 0);
    std::mt19937_64 rng(p.seed);
    for (int e = 0; e < p.n_experiments; ++e) {
        if (p.samples_per_label <= 0) {
            out.push_back(idx);
            continue;
        }
        // like MTEB: the permutation is reshuffled from where the previous experiment left it
        std::shuffle(idx.begin(), idx.end(), rng);
        std::map<int, int> count;
        std::vector<int> pick;
        for (int i : idx) {
            if (count[y[i]] < p.samples_per_label) {
                count[y[i]]++;
                pick.push_back(i);
            }
        }
        out.push_back(std::move(pick));
    }
    return out;
}

std::vector<int> needed_train_rows(const std::vector<int> & y, const Protocol & p) {
    std::set<int> u;
    for (auto & e : undersample(y, p)) u.insert(e.begin(), e.end());
    return std::vector<int>(u.begin(), u.end());
}

std::vector<int> test_rows(const std::vector<int> & y, const Protocol & p) {
    std::vector<int> all(y.size());
    std::iota(all.begin(), all.end(), 0);
    if (p.max_test <= 0 || (int) y.size() <= p.max_test) return all;
    // stratified: keep each label's share, rounding down, then fill up in shuffled order
    std::mt19937_64 rng(p.seed + 1);
    std::shuffle(all.begin(), all.end(), rng);
    std::map<int, int> total, quota, taken;
    for (int l : y) total[l]++;
    for (auto & [l, n] : total) quota[l] = (int) ((int64_t) n * p.max_test / (int64_t) y.size());
    std::vector<int> pick, rest;
    for (int i : all) {
        if (taken[y[i]] < quota[y[i]]) {
            taken[y[i]]++;
            pick.push_back(i);
        } else {
            rest.push_back(i);
        }
    }
    for (size_t i = 0; i < rest.size() && (int) pick.size() < p.max_test; ++i) pick.push_back(rest[i]);
    std::sort(pick.begin(), pick.end());
    return pick;
}

// ---- liblinear ---------------------------------------------------------------------------------

namespace {
void quiet(const char *) {}

// liblinear (Debian liblinear-dev), linked by CMake.
struct Liblinear {
    decltype(&::train) train = &::train;
    decltype(&::predict) predict = &::predict;
    decltype(&::free_and_destroy_model) free_model = &::free_and_destroy_model;
    decltype(&::check_parameter) check = &::check_parameter;
    decltype(&::set_print_string_function) set_print = &::set_print_string_function;
};

const Liblinear & liblinear() {
    static const Liblinear lib;
    return lib;
}

// One dense row as liblinear nodes: features 1..dim, the bias feature dim+1, terminator -1.
void to_nodes(const float * x, int dim, std::vector<feature_node> & out) {
    out.resize(dim + 2);
    for (int j = 0; j < dim; ++j) out[j] = {j + 1, (double) x[j]};
    out[dim] = {dim + 1, 1.0};
    out[dim + 1] = {-1, 0.0};
}
}  // namespace

LogReg::~LogReg() {
    if (model_) {
        auto * m = static_cast<model *>(model_);
        liblinear().free_model(&m);
    }
}

void LogReg::fit(const Matrix & X, const std::vector<int> & rows, const std::vector<int> & y, double C, double eps) {
    const Liblinear & L = liblinear();
    if (rows.empty()) throw Error("logistic regression: no training rows");
    L.set_print(quiet);
    const int dim = X.dim;
    std::vector<feature_node> nodes((size_t) rows.size() * (dim + 2));
    std::vector<feature_node *> xs(rows.size());
    std::vector<double> ys(rows.size());
    std::vector<feature_node> tmp;
    for (size_t i = 0; i < rows.size(); ++i) {
        to_nodes(X.row(rows[i]), dim, tmp);
        std::copy(tmp.begin(), tmp.end(), nodes.begin() + i * (dim + 2));
        xs[i] = nodes.data() + i * (dim + 2);
        ys[i] = y[rows[i]];
    }
    problem prob{};
    prob.l = (int) rows.size();
    prob.n = dim + 1;
    prob.y = ys.data();
    prob.x = xs.data();
    prob.bias = 1.0;
    parameter par{};
    par.solver_type = L2R_LR;
    par.C = C;
    par.eps = eps;
    if (const char * err = L.check(&prob, &par)) throw Error(std::string("liblinear: ") + err);
    if (model_) {
        auto * m = static_cast<model *>(model_);
        L.free_model(&m);
    }
    model_ = L.train(&prob, &par);  // liblinear copies what it keeps (w, labels), not the problem
}

int LogReg::predict(const float * x, int dim) const {
    if (!model_) throw Error("logistic regression: predict before fit");
    std::vector<feature_node> nodes;
    to_nodes(x, dim, nodes);
    return (int) liblinear().predict(static_cast<const model *>(model_), nodes.data());
}

// ---- metrics and the protocol --------------------------------------------------------------------

double accuracy(const std::vector<int> & t, const std::vector<int> & p) {
    if (t.empty() || t.size() != p.size()) throw Error("accuracy: empty or mismatched label vectors");
    size_t ok = 0;
    for (size_t i = 0; i < t.size(); ++i) ok += t[i] == p[i];
    return (double) ok / t.size();
}

double macro_f1(const std::vector<int> & t, const std::vector<int> & p) {
    if (t.empty() || t.size() != p.size()) throw Error("macro_f1: empty or mismatched label vectors");
    std::set<int> labels(t.begin(), t.end());
    labels.insert(p.begin(), p.end());
    double sum = 0;
    for (int l : labels) {
        size_t tp = 0, fp = 0, fn = 0;
        for (size_t i = 0; i < t.size(); ++i) {
            tp += t[i] == l && p[i] == l;
            fp += t[i] != l && p[i] == l;
            fn += t[i] == l && p[i] != l;
        }
        sum += tp ? 2.0 * tp / (2.0 * tp + fp + fn) : 0.0;
    }
    return sum / labels.size();
}

namespace {
void mean_std(const std::vector<double> & v, double & mean, double & sd) {
    mean = std::accumulate(v.begin(), v.end(), 0.0) / v.size();
    double s = 0;
    for (double x : v) s += (x - mean) * (x - mean);
    sd = std::sqrt(s / v.size());
}
}  // namespace

Result run(const Matrix & train, const std::vector<int> & y_train, const Matrix & test,
           const std::vector<int> & y_test, const Protocol & p) {
    if (train.dim != test.dim) throw Error("probe: train and test embeddings differ in width");
    if ((int) y_train.size() != train.rows || (int) y_test.size() != test.rows) throw Error("probe: label count mismatch");
    if (p.n_experiments < 1) throw Error("probe: n_experiments must be >= 1");
    Result r;
    std::vector<int> trows = test_rows(y_test, p);
    std::vector<int> truth;
    for (int i : trows) truth.push_back(y_test[i]);
    r.n_test = (int) trows.size();
    for (auto & rows : undersample(y_train, p)) {
        LogReg lr;
        lr.fit(train, rows, y_train, p.C, p.eps);
        std::vector<int> pred;
        for (int i : trows) pred.push_back(lr.predict(test.row(i), test.dim));
        r.acc.push_back(accuracy(truth, pred));
        r.f1.push_back(macro_f1(truth, pred));
        r.n_train = std::max(r.n_train, (int) rows.size());
    }
    mean_std(r.acc, r.acc_mean, r.acc_std);
    mean_std(r.f1, r.f1_mean, r.f1_std);
    return r;
}

}  // namespace kvlens::probe
