// The MTEB classification protocol (Muennighoff et al., 2023; mteb AbsTaskClassification) on precomputed
// embeddings: for each of n_experiments, shuffle the train split, keep the first samples_per_label texts of
// every label, fit a logistic-regression probe on their embeddings, predict the whole test split, score
// accuracy and macro-F1; report mean ± std over the experiments. docs/EMBEDDINGS.md has the details and
// where this differs from MTEB (liblinear instead of scikit-learn, our RNG instead of NumPy's).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace kvlens::probe {

struct LabeledText {
    std::string text;
    int label = -1;  // -1 when the file has no label
};

// JSONL with one object per line: "text" (non-empty string) and, when require_label, "label" (integer >= 0).
// Blank lines are skipped. Errors name the file and the 1-based line: "train.jsonl:12: missing \"text\"".
std::vector<LabeledText> read_text_jsonl(const std::string & path, bool require_label);

struct Dataset {
    std::string name;                     // folder name, e.g. "banking77"
    std::vector<std::string> label_names; // labels.json (index = label)
    std::vector<LabeledText> train, test;
};

// A classification folder: train.jsonl, test.jsonl, labels.json (a JSON list of names). Missing files, labels
// outside labels.json, or an empty split: kvlens::Error naming what is wrong.
Dataset load_dataset(const std::string & dir);
// Sub-folders of root that hold a train.jsonl, sorted by name.
std::vector<std::string> list_datasets(const std::string & root);

struct Protocol {
    int n_experiments = 10;     // MTEB default
    int samples_per_label = 8;  // MTEB default (per-task overrides: mteb_protocol); <= 0: the whole train split
    uint64_t seed = 42;         // MTEB's task seed
    double C = 1.0;             // inverse L2 strength (scikit-learn's default, which MTEB keeps)
    double eps = 0.01;          // liblinear stopping tolerance for L2R_LR (its default)
    int max_test = 0;           // > 0: score on a stratified subsample of at most this many test rows
};

// MTEB's numbers for a dataset folder name (n_experiments=10; samples_per_label 8, 16 for emotion, 32 for
// amazon_counterfactual_*), as found in mteb's task definitions.
Protocol mteb_protocol(const std::string & dataset_name);

// Train indices per experiment (MTEB's undersampling; deterministic in protocol.seed).
std::vector<std::vector<int>> undersample(const std::vector<int> & y_train, const Protocol & p);
// The sorted union of undersample(): the only train rows whose embeddings the protocol needs.
std::vector<int> needed_train_rows(const std::vector<int> & y_train, const Protocol & p);
// Test rows to score: all, or a stratified subsample of p.max_test rows (deterministic, sorted).
std::vector<int> test_rows(const std::vector<int> & y_test, const Protocol & p);

// Row-major embeddings: row i is data[i * dim .. i * dim + dim).
struct Matrix {
    const float * data = nullptr;
    int rows = 0, dim = 0;
    const float * row(int i) const { return data + (size_t) i * dim; }
};

// Logistic regression (liblinear L2R_LR: L2-regularised, primal trust-region Newton, one-vs-rest for more than
// two classes, bias as an extra regularised feature).
class LogReg {
public:
    LogReg() = default;
    ~LogReg();
    LogReg(const LogReg &) = delete;
    LogReg & operator=(const LogReg &) = delete;
    void fit(const Matrix & X, const std::vector<int> & rows, const std::vector<int> & y, double C, double eps);
    int predict(const float * x, int dim) const;

private:
    void * model_ = nullptr;  // liblinear model
};

struct Result {
    double acc_mean = 0, acc_std = 0, f1_mean = 0, f1_std = 0;  // std: population (ddof 0) over experiments
    std::vector<double> acc, f1;  // per experiment
    int n_train = 0;              // train rows per experiment (largest)
    int n_test = 0;
};

// The protocol on embeddings of every train row (only needed_train_rows() must be filled) and every test row.
Result run(const Matrix & train, const std::vector<int> & y_train, const Matrix & test,
           const std::vector<int> & y_test, const Protocol & p);

double accuracy(const std::vector<int> & y_true, const std::vector<int> & y_pred);
// scikit-learn's f1_score(average="macro"): unweighted mean over the labels present in y_true or y_pred; a
// label with no true and no predicted positives in that union scores 0.
double macro_f1(const std::vector<int> & y_true, const std::vector<int> & y_pred);

}  // namespace kvlens::probe
