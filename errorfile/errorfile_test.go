package errorfile

import (
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLayout: the JSON has torchrun's nesting and field names, timestamp a string of seconds.
func TestLayout(t *testing.T) {
	code := 7
	b, err := Report{Message: "boom", CallStack: "main.main()", Time: time.Unix(1700000000, 0), ErrorCode: &code}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	m := v["message"]
	extra, _ := m["extraInfo"].(map[string]any)
	if m["message"] != "boom" || m["errorCode"] != 7.0 || extra["timestamp"] != "1700000000" || extra["py_callstack"] != "main.main()" {
		t.Fatalf("layout %s", b)
	}
	r, err := Parse(b)
	if err != nil || r.Message != "boom" || *r.ErrorCode != 7 || r.Time.Unix() != 1700000000 || r.CallStack != "main.main()" {
		t.Fatalf("round trip: %+v, %v", r, err)
	}
}

func TestParseForms(t *testing.T) {
	r, err := Parse([]byte(`{"message": "plain old form"}`))
	if err != nil || r.Message != "plain old form" {
		t.Fatalf("plain: %+v %v", r, err)
	}
	for _, bad := range []string{``, `[]`, `{}`, `{"message": 3}`, `{"message": {"message": "x", "extraInfo": {"timestamp": "soon"}}}`} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRecordAndRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "attempt_0", "1", "error.json")
	if _, err := Read(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
	t.Setenv(Env, "")
	if p, err := Record(errors.New("x")); p != "" || err != nil {
		t.Fatalf("unset variable: %q %v", p, err)
	}
	t.Setenv(Env, path)
	if p, err := Record(errors.New("layer 3: out of memory")); p != path || err != nil {
		t.Fatalf("Record: %q %v", p, err)
	}
	r, err := Read(path)
	if err != nil || r.Message != "layer 3: out of memory" || !strings.Contains(r.CallStack, "TestRecordAndRead") || time.Since(r.Time) > time.Minute {
		t.Fatalf("read back %+v, %v", r, err)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := Report{Message: "m", CallStack: "s", Time: time.Unix(1, 0)}.Marshal()
	f.Add(b)
	f.Add([]byte(`{"message": "x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Parse(b)
		if err != nil {
			return
		}
		// What parses re-encodes to something that parses to the same message.
		b2, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := Parse(b2)
		if err != nil || r2.Message != r.Message {
			t.Fatalf("re-encoding %q: %+v %v", b2, r2, err)
		}
	})
}
