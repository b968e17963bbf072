package gpu

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"
)

func gpuDev(i int, name string, totalGiB, usedGiB float64) Device {
	total, used := uint64(totalGiB*gb), uint64(usedGiB*gb)
	return Device{
		Index: i, UUID: fmt.Sprintf("GPU-%d", i), Name: name,
		MemoryTotal: total, MemoryUsed: used, MemoryFree: total - used,
	}
}

func a10gDev(i int, usedGiB float64) Device { return gpuDev(i, "NVIDIA A10G", 24, usedGiB) }
func h100Dev(i int, usedGiB float64) Device { return gpuDev(i, "NVIDIA H100 80GB HBM3", 80, usedGiB) }

func need(t *testing.T, name string, s ModelShape, ctxLen, slots int) ModelNeed {
	t.Helper()
	e, err := EstimateShape(s, ctxLen, slots, -1)
	if err != nil {
		t.Fatal(err)
	}
	return NeedOf(name, e)
}

func TestPlace(t *testing.T) {
	n8B := need(t, "llama-8b", llama8B, 8192, 1)         // 5.9 GiB
	n70B := need(t, "llama-70b", llama70B, 8192, 1)      // 42.5 GiB
	n70BLong := need(t, "llama-70b", llama70B, 16384, 2) // 50.1 GiB
	n70BLong2 := n70BLong
	n70BLong2.MaxGPUs = 2
	embed := ModelNeed{Name: "embed", Bytes: 10 * gb}
	split := PlaceOptions{AllowSplit: true}
	fourA10G := []Device{a10gDev(0, 0), a10gDev(1, 0), a10gDev(2, 0), a10gDev(3, 0)}

	tests := []struct {
		name    string
		req     []ModelNeed
		devs    []Device
		snapErr string
		opts    PlaceOptions
		want    map[string][]int // model → GPU indexes
		wantErr string
	}{
		{
			name: "8B on an A10G",
			req:  []ModelNeed{n8B}, devs: []Device{a10gDev(0, 0)},
			want: map[string][]int{"llama-8b": {0}},
		},
		{
			name: "70B Q4 on one H100 80GB",
			req:  []ModelNeed{n70B}, devs: []Device{h100Dev(0, 0)},
			want: map[string][]int{"llama-70b": {0}},
		},
		{
			name: "70B on an A10G is refused",
			req:  []ModelNeed{n70B}, devs: []Device{a10gDev(0, 0)},
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-70b" needs 42.5 GiB, largest free GPU has 21.6 GiB (NVIDIA A10G)`,
		},
		{
			name: "two models on one H100",
			req:  []ModelNeed{n8B, n70B}, devs: []Device{h100Dev(0, 0)},
			want: map[string][]int{"llama-8b": {0}, "llama-70b": {0}},
		},
		{
			name: "70B long context over 2 A10G is still refused",
			req:  []ModelNeed{n70BLong}, devs: []Device{a10gDev(0, 0), a10gDev(1, 0)}, opts: split,
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-70b" needs 50.1 GiB, largest free GPU has 21.6 GiB (NVIDIA A10G), all 2 GPUs together 43.2 GiB`,
		},
		{
			name: "70B long context over 4 A10G takes the fewest, 3",
			req:  []ModelNeed{n70BLong}, devs: fourA10G, opts: split,
			want: map[string][]int{"llama-70b": {0, 1, 2}},
		},
		{
			name: "no split unless allowed",
			req:  []ModelNeed{n70BLong}, devs: fourA10G,
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-70b" needs 50.1 GiB, largest free GPU has 21.6 GiB (NVIDIA A10G)`,
		},
		{
			name: "MaxGPUs caps the split",
			req:  []ModelNeed{n70BLong2}, devs: fourA10G, opts: split,
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-70b" needs 50.1 GiB, largest free GPU has 21.6 GiB (NVIDIA A10G), all 4 GPUs together 86.4 GiB`,
		},
		{
			name: "best fit: the fuller GPU that still holds it",
			req:  []ModelNeed{n8B}, devs: []Device{a10gDev(0, 0), h100Dev(1, 60)}, // 21.6 vs 12 GiB usable
			want: map[string][]int{"llama-8b": {1}},
		},
		{
			name: "largest first, then best fit",
			req:  []ModelNeed{n8B, embed, n70B}, devs: []Device{h100Dev(0, 0), a10gDev(1, 0)},
			// 70B → H100 (29.5 left); embed → A10G (21.6 < 29.5, 11.6 left);
			// 8B → A10G (11.6 < 29.5).
			want: map[string][]int{"llama-70b": {0}, "embed": {1}, "llama-8b": {1}},
		},
		{
			name: "a refused model does not block the others",
			req:  []ModelNeed{n70B, n8B}, devs: []Device{a10gDev(0, 0)},
			want:    map[string][]int{"llama-8b": {0}},
			wantErr: `gpu: model "llama-70b" needs 42.5 GiB, largest free GPU has 21.6 GiB (NVIDIA A10G)`,
		},
		{
			name: "the models already loaded count",
			req:  []ModelNeed{n8B}, devs: []Device{a10gDev(0, 18)},
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-8b" needs 5.9 GiB, largest free GPU has 3.6 GiB (NVIDIA A10G)`,
		},
		{
			name: "headroom 25 %",
			req:  []ModelNeed{n8B}, devs: []Device{a10gDev(0, 12.5)}, opts: PlaceOptions{Headroom: 0.25},
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-8b" needs 5.9 GiB, largest free GPU has 5.5 GiB (NVIDIA A10G)`,
		},
		{
			name: "no headroom",
			req:  []ModelNeed{n8B}, devs: []Device{a10gDev(0, 18)}, opts: PlaceOptions{Headroom: -1},
			want: map[string][]int{"llama-8b": {0}},
		},
		{
			name: "no NVML",
			req:  []ModelNeed{n8B}, snapErr: "gpu: unavailable: nvml: library not found",
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-8b" needs 5.9 GiB, no GPUs (gpu: unavailable: nvml: library not found)`,
		},
		{
			name: "GPUs without a memory reading are skipped",
			req:  []ModelNeed{n8B}, devs: []Device{{Index: 0, Name: "NVIDIA A10G", Missing: FieldMemory}},
			want:    map[string][]int{},
			wantErr: `gpu: model "llama-8b" needs 5.9 GiB, no GPUs (no GPU reports its memory)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := Snapshot{Devices: tt.devs, Err: tt.snapErr}
			plan, err := Place(tt.req, snap, tt.opts)
			got := map[string][]int{}
			for _, a := range plan.Assignments {
				got[a.Model] = a.GPUs
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("placed %v, want %v", got, tt.want)
			}
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("err = %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Errorf("err = %v\nwant %s", err, tt.wantErr)
			case tt.wantErr != "":
				var fe *FitError
				if !errors.Is(err, ErrNoFit) || !errors.As(err, &fe) {
					t.Errorf("err %v is not a *FitError wrapping ErrNoFit", err)
				}
			}
			// Request order is kept.
			var order []string
			for _, m := range tt.req {
				if _, ok := tt.want[m.Name]; ok {
					order = append(order, m.Name)
				}
			}
			for i, a := range plan.Assignments {
				if i >= len(order) || a.Model != order[i] {
					t.Errorf("assignment %d is %q, want request order %v", i, a.Model, order)
				}
			}
		})
	}
}

func TestPlaceSplitDetails(t *testing.T) {
	m := ModelNeed{Name: "big", Bytes: 30 * gb, PerGPUBytes: 1 * gb}
	snap := Snapshot{Devices: []Device{a10gDev(0, 0), h100Dev(1, 70), a10gDev(2, 10)}}
	before := fmt.Sprintf("%+v", snap)
	plan, err := Place([]ModelNeed{m}, snap, PlaceOptions{AllowSplit: true, Headroom: -1})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", snap) != before {
		t.Error("Place modified the snapshot")
	}
	a, ok := plan.Assignment("big")
	if !ok {
		t.Fatal("big not placed")
	}
	// Usable: GPU 0 24 GiB, GPU 1 10 GiB, GPU 2 14 GiB; none holds 30 GiB.
	// The two roomiest, 0 and 2, hold the 29 GiB of layers besides the
	// 1 GiB each GPU needs for itself: 23 + 13 = 36 GiB of room, so the
	// layers split 23:13.
	if !reflect.DeepEqual(a.GPUs, []int{0, 2}) || !reflect.DeepEqual(a.UUIDs, []string{"GPU-0", "GPU-2"}) {
		t.Fatalf("GPUs %v %v, want [0 2]", a.GPUs, a.UUIDs)
	}
	var charged uint64
	for _, b := range a.Bytes {
		charged += b
	}
	if charged != m.Bytes+m.PerGPUBytes { // one more compute buffer than on one GPU
		t.Errorf("charged %d bytes, want %d", charged, m.Bytes+m.PerGPUBytes)
	}
	if a.Bytes[0] > 24*gb || a.Bytes[1] > 14*gb {
		t.Errorf("charged %v beyond the GPUs' room", a.Bytes)
	}
	if sum := a.Split[0] + a.Split[1]; math.Abs(sum-1) > 1e-9 || math.Abs(a.Split[0]/a.Split[1]-23.0/13) > 1e-6 {
		t.Errorf("split %v, want 23:13 summing to 1", a.Split)
	}
	if got := a.VisibleDevices(); got != "GPU-0,GPU-2" {
		t.Errorf("VisibleDevices = %q", got)
	}
	if got := a.TensorSplit(); got != "0.639,0.361" {
		t.Errorf("TensorSplit = %q", got)
	}
}

func TestAssignmentStrings(t *testing.T) {
	one := Assignment{Model: "m", GPUs: []int{3}, UUIDs: []string{""}}
	if got := one.VisibleDevices(); got != "3" {
		t.Errorf("VisibleDevices without UUID = %q, want the index", got)
	}
	if got := one.TensorSplit(); got != "" {
		t.Errorf("TensorSplit on one GPU = %q, want empty", got)
	}
}

func TestPlaceInvalid(t *testing.T) {
	devs := Snapshot{Devices: []Device{a10gDev(0, 0)}}
	tests := []struct {
		name    string
		req     []ModelNeed
		opts    PlaceOptions
		wantErr string
	}{
		{"no name", []ModelNeed{{Bytes: 1}}, PlaceOptions{}, "gpu: place: model without a name"},
		{"twice", []ModelNeed{{Name: "a", Bytes: 1}, {Name: "a", Bytes: 2}}, PlaceOptions{}, `gpu: place: model "a" listed twice`},
		{"zero bytes", []ModelNeed{{Name: "a"}}, PlaceOptions{}, `gpu: place: model "a" needs zero bytes`},
		{"headroom 1", []ModelNeed{{Name: "a", Bytes: 1}}, PlaceOptions{Headroom: 1}, "gpu: place: headroom 1.00 must be below 1"},
		{"headroom NaN", []ModelNeed{{Name: "a", Bytes: 1}}, PlaceOptions{Headroom: math.NaN()}, "gpu: place: headroom NaN must be below 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := Place(tt.req, devs, tt.opts)
			if err == nil || err.Error() != tt.wantErr || errors.Is(err, ErrNoFit) {
				t.Errorf("err = %v, want %q", err, tt.wantErr)
			}
			if len(plan.Assignments) != 0 {
				t.Errorf("placed %v on invalid input", plan.Assignments)
			}
		})
	}
	if _, err := Place(nil, devs, PlaceOptions{}); err != nil {
		t.Errorf("nothing to place: %v", err)
	}
	if !strings.HasPrefix(ErrNoFit.Error(), "gpu: ") {
		t.Error("ErrNoFit lacks the package prefix")
	}
}
