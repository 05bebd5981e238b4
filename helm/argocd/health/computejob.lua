-- Argo CD health of a suanli.io ComputeJob (resource.customizations.health.suanli.io_ComputeJob).
-- gopher-lua, as Argo CD runs it: base and table functions and os.time/os.date only (no string.*,
-- math.*); `obj` is the live object.
local hs = {}
local function msg(default)
  if obj.status ~= nil and obj.status.message ~= nil and obj.status.message ~= "" then
    return obj.status.message
  end
  return default
end

if obj.status == nil or obj.status.phase == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Suanli operator to pick up the job"
  return hs
end

if obj.metadata ~= nil and obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the Suanli operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end

local phase = obj.status.phase
local where = ""
if obj.status.binding ~= nil and obj.status.binding.center ~= nil then
  where = " on " .. obj.status.binding.center .. "/" .. tostring(obj.status.binding.pool)
end

if phase == "Pending" then
  hs.status = "Progressing"
  hs.message = msg("Pending: not yet planned")
elseif phase == "Queued" then
  hs.status = "Progressing"
  hs.message = msg("Queued: no pool can take the job now; it waits for capacity or energy budget")
elseif phase == "Deferred" then
  hs.status = "Suspended"
  local default = "Deferred to a cleaner or cheaper window"
  if obj.status.plannedStart ~= nil then
    default = default .. ", planned start " .. obj.status.plannedStart
  end
  hs.message = msg(default)
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = msg("Suspended by spec.suspend; set it to false to put the job back in the queue")
elseif phase == "Bound" then
  hs.status = "Progressing"
  hs.message = msg("Bound" .. where .. "; starting")
elseif phase == "Running" then
  hs.status = "Progressing"
  hs.message = msg("Running" .. where)
elseif phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = msg("Succeeded" .. where)
elseif phase == "Failed" then
  hs.status = "Degraded"
  hs.message = msg("Failed" .. where)
elseif phase == "Invalid" then
  hs.status = "Degraded"
  hs.message = msg("Invalid: the spec cannot be scheduled as written; see the Invalid condition")
else
  hs.status = "Unknown"
  hs.message = "Unknown ComputeJob phase " .. tostring(phase)
end
return hs
