-- Argo CD health of an Application (resource.customizations.health.argoproj.io_Application):
-- Argo CD dropped it by default in 1.8; app-of-apps sync waves need it to wait for each child.
local hs = {}
hs.status = "Progressing"
hs.message = ""
if obj.status ~= nil and obj.status.health ~= nil then
  hs.status = obj.status.health.status
  if obj.status.health.message ~= nil then
    hs.message = obj.status.health.message
  end
end
return hs
