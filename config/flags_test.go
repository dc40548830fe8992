package config

import (
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestBindFlags(t *testing.T) {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	BindFlags(fs)
	required := []string{"config", "kafka.brokers", "kafka.input-topic", "kafka.group-id", "kafka.delivery",
		"redis.addrs", "admin.listen", "ops.listen", "log.level", "embedded"}
	for _, name := range required {
		if fs.Lookup(name) == nil {
			t.Errorf("flag --%s is not registered", name)
		}
	}
	d := reflect.ValueOf(Default())
	for _, f := range flagKeys {
		fl := fs.Lookup(f.flag)
		if fl == nil {
			t.Fatalf("flag --%s is not registered", f.flag)
		}
		if want := strings.ReplaceAll(f.key, "_", "-"); f.flag != want && f.flag != "embedded" {
			t.Errorf("flag --%s sets %s: want --%s", f.flag, f.key, want)
		}
		// The help shows Default's value.
		v := d.FieldByIndex(leafOf(f.key).index)
		want := formatDefault(v)
		got := fl.DefValue
		if v.Kind() == reflect.String {
			got = `"` + got + `"`
		}
		if v.Kind() == reflect.Slice {
			got = strings.ReplaceAll(strings.ReplaceAll(got, "[", `["`), "]", `"]`)
		}
		if v.Type() == durationType {
			want = v.Interface().(interface{ String() string }).String()
		}
		if got != want {
			t.Errorf("--%s default %s, want %s", f.flag, got, want)
		}
	}
}

func TestFlagsWithoutBindFlags(t *testing.T) {
	// A flag set holding other flags, none of ours: nothing is taken from it.
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.Bool("verbose", false, "")
	if err := fs.Parse([]string{"--verbose"}); err != nil {
		t.Fatal(err)
	}
	if got, file := flagSettings(fs); len(got) != 0 || file != "" {
		t.Errorf("flagSettings = %v, %q", got, file)
	}
}
