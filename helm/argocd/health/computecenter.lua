-- Argo CD health of a suanli.io ComputeCenter (resource.customizations.health.suanli.io_ComputeCenter).
-- gopher-lua, as Argo CD runs it: base and table functions and os.time/os.date only (no string.*,
-- math.*); `obj` is the live object.
local hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Suanli operator to observe the center"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Suanli operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local ready = nil
local degraded = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    ready = condition
  elseif condition.type == "Degraded" then
    degraded = condition
  end
end

local function describe(condition, default)
  if condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  if condition.reason ~= nil and condition.reason ~= "" then
    return condition.reason
  end
  return default
end

if degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(degraded, "The center is degraded")
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(ready, "The center is ready")
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready, "The center is not ready")
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
