package gpu

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestWriteTable(t *testing.T) {
	h100 := func(i int, usedGiB float64, util uint32, watts float64, temp uint32) Device {
		d := h100Dev(i, usedGiB)
		d.UUID = "GPU-5f3c1a2e-0000-0000-0000-00000000000" + string(rune('0'+i))
		d.UtilizationGPU, d.UtilizationMemory = util, util/2
		d.PowerDrawW, d.PowerLimitW, d.TemperatureC = watts, 700, temp
		d.SMClockMHz, d.MemClockMHz = 1980, 2619
		return d
	}
	a10g := a10gDev(0, 21.25)
	a10g.UtilizationGPU, a10g.PowerLimitW, a10g.TemperatureC = 97, 300, 71
	a10g.Missing = FieldPowerDraw | FieldECC
	lost := Device{Index: 1, Missing: AllFields, Errs: []string{"handle: gpu is lost"}}
	hot := a10gDev(2, 3)
	hot.UtilizationGPU, hot.PowerDrawW, hot.PowerLimitW = 12, 61.4, 300
	hot.Missing = FieldTemperature
	hot.Errs = []string{"temperature: unknown error"}

	tests := []struct {
		golden string
		snap   Snapshot
	}{
		{"table_h100.golden", Snapshot{Devices: []Device{
			h100(0, 45.5, 93, 612.4, 67),
			h100(1, 0.5, 0, 71.9, 31),
		}}},
		{"table_a10g_partial.golden", Snapshot{Devices: []Device{a10g, lost, hot}}},
		{"table_no_nvml.golden", Snapshot{Err: "gpu: unavailable: nvml: library not found"}},
		{"table_no_gpus.golden", Snapshot{}},
	}
	for _, tt := range tests {
		t.Run(tt.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteTable(&buf, tt.snap); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(buf.Bytes(), want) {
				t.Errorf("table differs from %s (go test -update rewrites it):\n got:\n%s\nwant:\n%s", path, buf.Bytes(), want)
			}
		})
	}
}
