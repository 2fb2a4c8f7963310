// What identifies a run, a pre-training stage and the whole sweep on disk: the keys written to
// run.json (a finished run is reused only when its key matches) and sweep.json (the planned
// runs, for notebooks). Keys hold the resolved config, so editing a comment in a model file does
// not orphan finished runs.
#include "experiments/ablation/spec.hpp"

#include "graph/json.hpp"
#include "graph/models/model_config.hpp"

#include <fmt/format.h>

namespace sy::ablation {

nlohmann::ordered_json Run::key(const Spec& spec) const {
  // The resolved config, so editing a comment in the model file does not orphan finished runs.
  const Arm& a = spec.arms[arm];
  nlohmann::ordered_json k = {{"config", to_json(parse_run_config(a.model_text, a.model, sets))},
                              {"sets", sets},
                              {"steps", spec.settings.steps},
                              {"eval_every", spec.settings.eval_every},
                              {"vocab", spec.settings.vocab}};
  if (a.pretrain >= 0) k["pretrain"] = spec.pretrain[static_cast<size_t>(a.pretrain)].key(spec.settings.vocab);
  if (a.upcycle) k["upcycle"] = true;
  if (!spec.settings.task.empty()) k["task"] = spec.settings.task;
  if (!spec.settings.mesh.empty()) {  // a mesh run sums in another order: not the same numbers
    k["mesh"] = spec.settings.mesh;
    k["layout"] = spec.settings.layout;
  }
  return k;
}

std::vector<std::string> PretrainStage::set_args() const {
  std::vector<std::string> out;
  for (const Override& o : sets) out.push_back(o.set_arg());
  out.push_back(fmt::format("train.seed={}", seed));
  return out;
}

nlohmann::ordered_json PretrainStage::key(int64_t vocab) const {
  if (!checkpoint.empty()) return {{"checkpoint", checkpoint}};
  return {{"config", to_json(parse_run_config(model_text, model, set_args()))},
          {"sets", set_args()},
          {"steps", steps},
          {"vocab", vocab}};
}

nlohmann::ordered_json spec_json(const Spec& spec, const std::vector<Run>& runs) {
  using J = nlohmann::ordered_json;
  const Settings& s = spec.settings;
  J common = J::object();
  for (const Override& o : s.common) common[o.key] = o.text;
  J arms = J::array();
  for (const Arm& a : spec.arms) {
    J overrides = J::object(), values = J::object();
    for (const Override& o : a.overrides) overrides[o.key] = o.text;
    for (size_t i = 0; i < spec.keys.size(); ++i) values[spec.keys[i]] = a.key_values[i];
    arms.push_back({{"name", a.name}, {"dir", "runs/" + a.slug}, {"overrides", overrides}, {"values", values},
                    {"seeds", a.seeds}, {"swept", a.swept}});
  }
  J run_list = J::array();
  for (const Run& r : runs)
    run_list.push_back({{"arm", spec.arms[r.arm].name}, {"seed", r.seed}, {"dir", r.dir}, {"sets", r.sets}});
  J stages = J::array();
  for (const PretrainStage& st : spec.pretrain)
    stages.push_back({{"name", st.name}, {"dir", st.checkpoint.empty() ? st.dir() : ""}, {"model", st.model},
                      {"steps", st.steps}, {"seed", st.seed}, {"checkpoint", st.checkpoint}});
  for (size_t i = 0; i < spec.arms.size(); ++i)
    if (spec.arms[i].pretrain >= 0) arms[i]["pretrain"] = spec.pretrain[static_cast<size_t>(spec.arms[i].pretrain)].name;
  J out = {{"name", spec.name},
            {"description", spec.description},
            {"spec", spec.path},
            {"scale", spec.scale},
            {"model", s.model},
            {"steps", s.steps},
            {"eval_every", s.eval_every},
            {"vocab", s.vocab},
            {"common", common},
            {"keys", spec.keys},
            {"swept_keys", spec.swept_keys},
            {"arms", arms},
          {"runs", run_list}};
  if (!s.task.empty()) out["task"] = s.task;
  if (!s.mesh.empty()) {
    out["mesh"] = s.mesh;
    out["layout"] = s.layout;
  }
  if (!stages.empty()) out["pretrain"] = stages;
  return out;
}

}  // namespace sy::ablation
