// Embedder: texts -> one pooled vector each (KV cache, hidden states or the random baseline), many texts per
// llama_decode through BatchRunner. The pooling knobs are a PoolConfig (kvlens/pooling.h).
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "kvlens/batch_embed.h"
#include "kvlens/model.h"
#include "kvlens/pooling.h"

namespace kvlens {

struct EmbedParams {
    PoolConfig pool;
    BatchParams batch;
    bool truncate = false;  // texts longer than the context: keep the first n_ctx tokens instead of failing
    bool parse_special = false;  // read special-token text such as "<|im_start|>" as those tokens (chat prompts)
};

struct EmbedRun {
    std::vector<float> data;  // n_texts x dim, row-major
    int n_texts = 0, dim = 0;
    int n_truncated = 0;
    BatchStats stats;
    const float * row(int i) const { return data.data() + (size_t) i * dim; }
};

class Embedder {
public:
    Embedder(std::shared_ptr<Model> model, const EmbedParams & params);

    int dim() const { return dim_; }
    const std::vector<int> & layers() const { return layers_; }
    PoolShape shape() const { return shape_; }
    const EmbedParams & params() const { return params_; }

    // Tokens of one text as the embedder sees them (BOS as the tokenizer adds it; truncated or checked).
    // Empty text or one over the context without truncate: kvlens::Error naming the text (1-based index).
    std::vector<Token> tokens(const std::string & text, int index, bool * truncated = nullptr) const;

    // Batched: every text is its own sequence; several per llama_decode.
    EmbedRun embed(const std::vector<std::string> & texts);
    // Reference path: one text at a time through a Session (single sequence); same result as embed().
    std::vector<float> embed_one(const std::string & text);

private:
    std::shared_ptr<Model> model_;
    EmbedParams params_;
    PoolShape shape_;
    std::vector<int> layers_;
    int dim_ = 0;
    std::unique_ptr<BatchRunner> runner_;  // created on first use (not for source=random)
};

}  // namespace kvlens
