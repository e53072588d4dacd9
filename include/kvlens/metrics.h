// Self-evaluation metrics: how well a score separates correct answers (positive, label 1) from wrong ones
// (label 0). Higher score = predicted more likely correct. Definitions (docs/COE.md):
//   roc_curve : one point per distinct score (ties share one threshold), from (0,0) at threshold +inf down to
//               (1,1) at the lowest score — the standard ROC (scikit-learn's roc_curve without
//               drop_intermediate)
//   auroc     : trapezoidal area under that curve (= Mann–Whitney U / (P·N), ties counting 1/2)
//   fpr_at_tpr: FPR where the ROC first reaches the target TPR, linearly interpolated between the two ROC points
//               around it (fpr95 = target 0.95)
//   aupr      : average precision with correct as positive, scikit-learn's average_precision_score:
//               Σ_k (R_k − R_{k−1}) · P_k over the thresholds (step-wise, no interpolation)
//   aupr_trapezoid: trapezoidal area under scikit-learn's precision_recall_curve (points from the highest
//               threshold down to the first reaching full recall, plus (recall 0, precision 1)) — what the CoE
//               reference evaluation (auc(recall, precision)) reports
// Undefined metrics give std::nullopt: no positives or no negatives (ROC, AUROC, FPR@TPR), no positives
// (AP), and empty input. Bad input throws kvlens::Error: sizes differ, a label other than 0/1, a non-finite score.
#pragma once
#include <cstdint>
#include <optional>
#include <vector>

namespace kvlens {

struct RocPoint {
    double fpr = 0, tpr = 0;
    double threshold = 0;  // predict "correct" when score >= threshold (+inf for the first point)
};

// Empty when undefined (one class missing).
std::vector<RocPoint> roc_curve(const std::vector<double> & scores, const std::vector<int> & labels);
std::optional<double> auroc(const std::vector<double> & scores, const std::vector<int> & labels);
std::optional<double> fpr_at_tpr(const std::vector<double> & scores, const std::vector<int> & labels, double tpr);
std::optional<double> fpr95(const std::vector<double> & scores, const std::vector<int> & labels);
std::optional<double> aupr(const std::vector<double> & scores, const std::vector<int> & labels);
std::optional<double> aupr_trapezoid(const std::vector<double> & scores, const std::vector<int> & labels);

// Trapezoidal area under given ROC points (e.g. to label a plotted curve); nullopt for fewer than 2 points.
std::optional<double> roc_area(const std::vector<RocPoint> & roc);

// Fraction of 1s in `correct` (labels 0/1); nullopt when empty.
std::optional<double> accuracy(const std::vector<int> & correct);

struct SelfEvalMetrics {
    std::optional<double> auroc, fpr95, aupr;
};
SelfEvalMetrics self_eval_metrics(const std::vector<double> & scores, const std::vector<int> & labels);

// Bootstrap of the AUROC of several scores on the same resamples of the rows (resamples with one class only
// are redrawn), for 95 % intervals and paired comparisons. n = 0 when the labels have one class only.
struct AurocBootstrap {
    int n = 0;
    std::vector<std::vector<double>> auroc;  // [score][resample]
    std::optional<double> quantile(size_t score, double q) const;
    struct Diff {
        double mean = 0, lo = 0, hi = 0;  // AUROC(a) − AUROC(b): mean and 95 % interval
        double p_first_higher = 0;        // share of resamples where a > b (ties count 1/2)
    };
    Diff difference(size_t a, size_t b) const;
};
AurocBootstrap bootstrap_auroc(const std::vector<std::vector<double>> & scores, const std::vector<int> & labels,
                               int n_resamples, uint64_t seed);

}  // namespace kvlens
