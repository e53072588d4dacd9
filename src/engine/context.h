// Engine-internal: the one llama.cpp context builder (Session and Engine), validating -c -b -ub -t -fa -ctk -ctv
// before llama.cpp sees them.
#pragma once
#include <string>

#include "kvlens/model.h"
#include "kvlens/session.h"
#include "kvlens/tap.h"
#include "llama.h"

namespace kvlens::engine {

// n_ctx_out: the user's limit (-c, or the model's training context capped at 4096); llama.cpp may round its cache up.
llama_context_params context_params(const ModelFacts & f, const SessionParams & p, int & n_ctx_out);
ggml_type parse_cache_type(const std::string & s);
// A tap spec checked against the model (layers in range, once each; K and V of equal width), layers sorted.
TapSpec validated_tap(const TapSpec & spec, const ModelFacts & f);

}  // namespace kvlens::engine
