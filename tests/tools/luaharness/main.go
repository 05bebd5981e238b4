// Command luaharness runs an Argo CD resource health script (Lua) the way Argo CD does, in the
// same VM (github.com/yuin/gopher-lua), over one or many objects, and prints the results as JSON.
//
// It follows Argo CD's calling convention (argo-cd util/lua/lua.go, ExecuteHealthLua):
//   - a fresh VM per object; a health customization from argocd-cm (without
//     resource.customizations.useOpenLibs.<key>) gets only the package, base and table libraries
//     and a "safe" os with just os.time and os.date (so string.*, math.*, io.* are nil);
//   - the object, decoded from JSON as Kubernetes' unstructured decoder does (integers int64,
//     other numbers float64, null nil), is the global `obj`;
//   - the script runs under a 1 s deadline and must return a table; it is encoded to JSON with
//     layeh.com/gopher-json and read as {"status", "message"}; a status outside Argo CD's six
//     becomes Unknown "Lua returned an invalid health status", nil or an ill-typed table gives an
//     empty health, any other return value or a Lua error is an error.
//
// Usage:
//
//	luaharness -script health.lua [-check] [-open-libs] FILE...
//
// Each FILE (or - for stdin) holds one object as JSON, or a fixture {"object": {...},
// "expectedHealth": {"status": ..., "messageContains": ...}} (tests/unit/argocd_fixtures).
// Output: a JSON array, one {"file", "status", "message", "error", "problems"} per FILE.
// With -check every FILE must be a fixture and the result must match its expectedHealth, with a
// non-empty message. Exit status: 0 all ran (and matched), 1 a script failed or a check did not
// match, 2 bad usage or unreadable input.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
)

// Argo CD's health status codes (gitops-engine pkg/health).
var validStatus = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true,
}

const (
	invalidHealthStatus = "Lua returned an invalid health status"
	scriptTimeout       = 1 * time.Second
)

type expectedHealth struct {
	Status          string `json:"status"`
	MessageContains string `json:"messageContains"`
}

type result struct {
	File     string   `json:"file"`
	Status   string   `json:"status"`
	Message  string   `json:"message"`
	Error    string   `json:"error,omitempty"`
	Problems []string `json:"problems,omitempty"`
}

// healthStatus is what Argo CD reads from the returned table (gitops-engine health.HealthStatus).
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("luaharness", flag.ContinueOnError)
	flags.SetOutput(stderr)
	scriptPath := flags.String("script", "", "the health script (.lua) to run")
	check := flags.Bool("check", false, "compare each result with the fixture's expectedHealth; exit 1 on a mismatch")
	openLibs := flags.Bool("open-libs", false, "open every Lua library, as resource.customizations.useOpenLibs.<key>: \"true\" does")
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *scriptPath == "" || flags.NArg() == 0 {
		fmt.Fprintln(stderr, "luaharness: give -script FILE.lua and at least one object or fixture JSON file (- for stdin)")
		return 2
	}
	script, err := os.ReadFile(*scriptPath)
	if err != nil {
		fmt.Fprintf(stderr, "luaharness: cannot read the script: %v\n", err)
		return 2
	}
	exit := 0
	results := make([]result, 0, flags.NArg())
	for _, file := range flags.Args() {
		obj, expected, err := readInput(file, stdin)
		if err != nil {
			fmt.Fprintf(stderr, "luaharness: %s: %v\n", file, err)
			return 2
		}
		res := result{File: file}
		health, err := executeHealthLua(obj, string(script), *openLibs)
		if err != nil {
			res.Error = err.Error()
			exit = 1
		} else {
			res.Status, res.Message = health.Status, health.Message
		}
		if *check {
			res.Problems = compare(res, expected)
			if len(res.Problems) > 0 {
				exit = 1
			}
		}
		results = append(results, res)
	}
	out, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		fmt.Fprintf(stderr, "luaharness: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, string(out))
	return exit
}

// readInput reads one object, unwrapping a fixture ({"object": ..., "expectedHealth": ...}).
func readInput(file string, stdin io.Reader) (map[string]any, *expectedHealth, error) {
	var data []byte
	var err error
	if file == "-" {
		data, err = io.ReadAll(stdin)
	} else {
		data, err = os.ReadFile(file)
	}
	if err != nil {
		return nil, nil, err
	}
	decoder := json.NewDecoder(bytes.NewReader(data))
	decoder.UseNumber()
	var doc map[string]any
	if err := decoder.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("not a JSON object: %w", err)
	}
	inner, isFixture := doc["object"].(map[string]any)
	if !isFixture {
		return unstructured(doc).(map[string]any), nil, nil
	}
	var expected *expectedHealth
	if raw, ok := doc["expectedHealth"]; ok {
		encoded, _ := json.Marshal(raw)
		expected = &expectedHealth{}
		if err := json.Unmarshal(encoded, expected); err != nil {
			return nil, nil, fmt.Errorf("expectedHealth: %w", err)
		}
	}
	return unstructured(inner).(map[string]any), expected, nil
}

// unstructured converts json.Number the way Kubernetes' unstructured JSON decoding does:
// integers to int64, every other number to float64.
func unstructured(value any) any {
	switch v := value.(type) {
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(v), 64)
		return f
	case []any:
		for i := range v {
			v[i] = unstructured(v[i])
		}
		return v
	case map[string]any:
		for k := range v {
			v[k] = unstructured(v[k])
		}
		return v
	}
	return value
}

func compare(res result, expected *expectedHealth) []string {
	if expected == nil {
		return []string{"not a fixture: -check needs {\"object\": ..., \"expectedHealth\": {\"status\": ...}}"}
	}
	var problems []string
	if res.Error != "" {
		return append(problems, "the script failed: "+res.Error)
	}
	if res.Status != expected.Status {
		problems = append(problems, fmt.Sprintf("status %q, expected %q", res.Status, expected.Status))
	}
	if !strings.Contains(res.Message, expected.MessageContains) {
		problems = append(problems, fmt.Sprintf("message %q does not contain %q", res.Message, expected.MessageContains))
	}
	if res.Message == "" {
		problems = append(problems, "empty message: Argo CD shows it to the person looking at the app")
	}
	return problems
}

// newState opens the libraries Argo CD opens for a health customization.
func newState(openLibs bool) *lua.LState {
	l := lua.NewState(lua.Options{SkipOpenLibs: !openLibs})
	if openLibs {
		return l
	}
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, lua.OpenOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			panic(err)
		}
	}
	// Argo CD's os holds only time and date (its copies of gopher-lua's); keep just those two.
	full := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	safe := l.NewTable()
	for _, name := range []string{"time", "date"} {
		safe.RawSetString(name, full.RawGetString(name))
	}
	l.SetGlobal(lua.OsLibName, safe)
	loaded := l.GetField(l.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	loaded.RawSetString(lua.OsLibName, safe)
	return l
}

func executeHealthLua(obj map[string]any, script string, openLibs bool) (healthStatus, error) {
	l := newState(openLibs)
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))

	fn, err := l.LoadString(script)
	if err == nil {
		l.Push(fn)
		err = l.PCall(0, lua.MultRet, nil)
	}
	var apiErr *lua.ApiError
	if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
		apiErr.StackTrace = ""
	}
	if err != nil {
		return healthStatus{}, err
	}
	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTNil:
		return healthStatus{}, nil
	case lua.LTTable:
	default:
		return healthStatus{}, fmt.Errorf("expect table output from Lua script, not %s", returned.Type())
	}
	encoded, err := luajson.Encode(returned)
	if err != nil {
		return healthStatus{}, err
	}
	var health healthStatus
	if err := json.Unmarshal(encoded, &health); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) {
			return healthStatus{}, nil // an empty table ([]) or ill-typed fields: Argo CD's empty health
		}
		return healthStatus{}, err
	}
	if !validStatus[health.Status] {
		return healthStatus{Status: "Unknown", Message: invalidHealthStatus}, nil
	}
	return health, nil
}

// toLua converts a decoded JSON value to Lua values as Argo CD's decodeValue does.
func toLua(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		table := l.CreateTable(len(v), 0)
		for _, item := range v {
			table.Append(toLua(l, item))
		}
		return table
	case map[string]any:
		table := l.CreateTable(0, len(v))
		for key, item := range v {
			table.RawSetH(lua.LString(key), toLua(l, item))
		}
		return table
	}
	return lua.LNil
}
