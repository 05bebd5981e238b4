// The Argo CD health-script harness (see main.go). Its own module so the operator's Python
// build never sees Go; tests/tools/install_tools.sh builds it into the tool cache.
// gopher-lua and gopher-json are the versions Argo CD's go.mod pins (bump them with Argo CD).
module suanli.io/tests/luaharness

go 1.23

require (
	github.com/yuin/gopher-lua v1.1.2
	layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427
)
