-- Argo CD health check for datagen.dev/DatasetJob.
-- Install: add to argocd-cm as resource.customizations.health.datagen.dev_DatasetJob
-- (see gitops/argocd/argocd-cm-patch.yaml). A spec change in Git starts a new run; the app
-- shows Progressing until that run (observedGeneration = generation) is published.
local hs = {}
local status = obj.status
if status == nil or status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and status.observedGeneration ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "A new spec is being picked up"
  return hs
end
local phase = status.phase
local shards = status.shards or {}
local items = status.items or {}
local progress = string.format("shards %s, items %s", shards.progress or "?", items.progress or "?")
if phase == "Succeeded" then
  hs.status = "Healthy"
  local rows = (status.output and status.output.rows) or 0
  hs.message = string.format("Published %d rows (%s)", rows, progress)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = (status.reason or "Failed") .. ": " .. (status.message or "")
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "Suspended (" .. progress .. ")"
else
  hs.status = "Progressing"
  hs.message = phase .. " (" .. progress .. ")"
end
return hs
