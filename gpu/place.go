package gpu

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DefaultHeadroom is the fraction of each GPU's memory Place keeps free
// when PlaceOptions leaves Headroom zero: the CUDA context, cuBLAS
// workspaces and allocator slack of the engines live there.
const DefaultHeadroom = 0.10

// ErrNoFit is wrapped by every placement refusal (a *FitError).
var ErrNoFit = errors.New("gpu: model does not fit")

// ModelNeed is one model to place.
type ModelNeed struct {
	Name  string // unique within one Place call, e.g. "llama-70b"
	Bytes uint64 // GPU memory on a single GPU: Estimate.Total()
	// PerGPUBytes is what every GPU of a layer split needs on top of its
	// share of the rest (compute buffers): Estimate.ComputeBytes. Only
	// used when the model is split.
	PerGPUBytes uint64
	// MaxGPUs caps a layer split for this model; 0 means any number,
	// 1 never splits it.
	MaxGPUs int
}

// NeedOf returns the ModelNeed for a model named name with estimate e.
func NeedOf(name string, e Estimate) ModelNeed {
	return ModelNeed{Name: name, Bytes: e.Total(), PerGPUBytes: e.ComputeBytes}
}

// PlaceOptions tune Place. The zero value keeps DefaultHeadroom and never
// splits a model.
type PlaceOptions struct {
	// Headroom is the fraction of each GPU's total memory that stays free:
	// 0 means DefaultHeadroom, a negative value keeps none.
	Headroom float64
	// AllowSplit lets a model that fits no single GPU be layer-split over
	// several (llama.cpp --split-mode layer --tensor-split).
	AllowSplit bool
}

// Plan is where Place put the models.
type Plan struct {
	Assignments []Assignment // one per placed model, in request order
}

// Assignment returns the assignment of the model named name.
func (p Plan) Assignment(name string) (Assignment, bool) {
	for _, a := range p.Assignments {
		if a.Model == name {
			return a, true
		}
	}
	return Assignment{}, false
}

// Assignment is the GPUs one model runs on.
type Assignment struct {
	Model string
	GPUs  []int    // NVML indexes, ascending
	UUIDs []string // the same GPUs by UUID
	Bytes []uint64 // memory charged on each GPU
	// Split is the share of the layers on each GPU (llama.cpp
	// --tensor-split), nil when the model runs on one GPU.
	Split []float64
}

// VisibleDevices is the value for the engine's CUDA_VISIBLE_DEVICES. It
// names GPUs by UUID, since CUDA numbers GPUs fastest first unless
// CUDA_DEVICE_ORDER=PCI_BUS_ID while NVML indexes follow the PCI bus, and
// falls back to the index for a GPU whose UUID is unknown.
func (a Assignment) VisibleDevices() string {
	ids := make([]string, len(a.GPUs))
	for i, g := range a.GPUs {
		if i < len(a.UUIDs) && a.UUIDs[i] != "" {
			ids[i] = a.UUIDs[i]
		} else {
			ids[i] = strconv.Itoa(g)
		}
	}
	return strings.Join(ids, ",")
}

// TensorSplit is the value for llama.cpp's --tensor-split ("" on one GPU).
func (a Assignment) TensorSplit() string {
	if len(a.Split) == 0 {
		return ""
	}
	parts := make([]string, len(a.Split))
	for i, f := range a.Split {
		parts[i] = strconv.FormatFloat(f, 'f', 3, 64)
	}
	return strings.Join(parts, ",")
}

// FitError says why a model was refused. Its message states the need and
// what was available, e.g.
//
//	gpu: model "llama-70b" needs 48.3 GiB, largest free GPU has 21.6 GiB (NVIDIA A10G)
type FitError struct {
	Model   string
	Need    uint64 // bytes
	Largest uint64 // usable bytes of the roomiest GPU, after headroom
	GPU     string // name of that GPU
	// Together is the usable memory of all GPUs when splitting was
	// allowed, else 0.
	Together uint64
	GPUs     int    // GPUs considered
	Reason   string // set when no GPU was usable, e.g. the snapshot's Err
}

func (e *FitError) Error() string {
	if e.GPUs == 0 {
		r := "no GPUs"
		if e.Reason != "" {
			r += " (" + e.Reason + ")"
		}
		return fmt.Sprintf("gpu: model %q needs %s GiB, %s", e.Model, gib(e.Need), r)
	}
	msg := fmt.Sprintf("gpu: model %q needs %s GiB, largest free GPU has %s GiB (%s)",
		e.Model, gib(e.Need), gib(e.Largest), e.GPU)
	if e.Together > 0 && e.GPUs > 1 {
		msg += fmt.Sprintf(", all %d GPUs together %s GiB", e.GPUs, gib(e.Together))
	}
	return msg
}

func (e *FitError) Unwrap() error { return ErrNoFit }

func gib(b uint64) string { return strconv.FormatFloat(float64(b)/(1<<30), 'f', 1, 64) }

type slot struct {
	index int
	uuid  string
	name  string
	avail uint64 // usable bytes left
}

// Place assigns each model to GPUs of snap with enough free memory. A model
// goes to the single GPU it fits best (the least free memory that still
// holds it, ties to the lower index); when none holds it and splitting is
// allowed, to the fewest GPUs whose free memory together holds it, layers
// in proportion to that memory. Larger models are placed first. A GPU keeps
// Headroom × its total memory free; GPUs without a memory reading are
// skipped.
//
// Models that fit nowhere are refused with a *FitError each (joined); the
// Plan still holds the models that were placed. Place is pure.
func Place(req []ModelNeed, snap Snapshot, opts PlaceOptions) (Plan, error) {
	headroom := opts.Headroom
	switch {
	case headroom == 0:
		headroom = DefaultHeadroom
	case headroom < 0:
		headroom = 0
	case !(headroom < 1): // also NaN
		return Plan{}, fmt.Errorf("gpu: place: headroom %.2f must be below 1", headroom)
	}
	seen := make(map[string]bool, len(req))
	for _, m := range req {
		switch {
		case m.Name == "":
			return Plan{}, errors.New("gpu: place: model without a name")
		case seen[m.Name]:
			return Plan{}, fmt.Errorf("gpu: place: model %q listed twice", m.Name)
		case m.Bytes == 0:
			return Plan{}, fmt.Errorf("gpu: place: model %q needs zero bytes", m.Name)
		}
		seen[m.Name] = true
	}

	var slots []slot
	for _, d := range snap.Devices {
		if !d.Has(FieldMemory) {
			continue
		}
		reserve := uint64(float64(d.MemoryTotal) * headroom)
		s := slot{index: d.Index, uuid: d.UUID, name: d.Name}
		if d.MemoryFree > reserve {
			s.avail = d.MemoryFree - reserve
		}
		slots = append(slots, s)
	}

	reason := snap.Err
	if reason == "" && len(slots) == 0 && len(snap.Devices) > 0 {
		reason = "no GPU reports its memory"
	}

	order := make([]int, len(req))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(req[b].Bytes, req[a].Bytes) })

	placed := make([]*Assignment, len(req))
	var errs []error
	for _, i := range order {
		m := req[i]
		if a, ok := placeOne(m, slots); ok {
			placed[i] = &a
			continue
		}
		if opts.AllowSplit && m.MaxGPUs != 1 {
			if a, ok := placeSplit(m, slots); ok {
				placed[i] = &a
				continue
			}
		}
		errs = append(errs, refusal(m, slots, reason, opts.AllowSplit && m.MaxGPUs != 1))
	}

	var p Plan
	for _, a := range placed {
		if a != nil {
			p.Assignments = append(p.Assignments, *a)
		}
	}
	return p, errors.Join(errs...)
}

// placeOne puts m on the best-fitting single GPU and charges it.
func placeOne(m ModelNeed, slots []slot) (Assignment, bool) {
	best := -1
	for i, s := range slots {
		if s.avail >= m.Bytes && (best < 0 || s.avail < slots[best].avail) {
			best = i
		}
	}
	if best < 0 {
		return Assignment{}, false
	}
	slots[best].avail -= m.Bytes
	s := slots[best]
	return Assignment{Model: m.Name, GPUs: []int{s.index}, UUIDs: []string{s.uuid}, Bytes: []uint64{m.Bytes}}, true
}

// placeSplit layer-splits m over the fewest GPUs that hold it: the roomiest
// ones, each charged PerGPUBytes plus its share of the rest.
func placeSplit(m ModelNeed, slots []slot) (Assignment, bool) {
	byRoom := make([]int, len(slots))
	for i := range byRoom {
		byRoom[i] = i
	}
	slices.SortStableFunc(byRoom, func(a, b int) int { return cmp.Compare(slots[b].avail, slots[a].avail) })

	body := m.Bytes - min(m.PerGPUBytes, m.Bytes) // what is split by layers
	maxGPUs := len(slots)
	if m.MaxGPUs > 0 {
		maxGPUs = min(maxGPUs, m.MaxGPUs)
	}
	for k := 2; k <= maxGPUs; k++ {
		chosen := byRoom[:k]
		var room uint64
		for _, i := range chosen {
			if slots[i].avail > m.PerGPUBytes {
				room += slots[i].avail - m.PerGPUBytes
			}
		}
		if room < body || slots[chosen[k-1]].avail <= m.PerGPUBytes {
			continue
		}
		// By index: llama.cpp splits layers over the visible devices in
		// the order CUDA_VISIBLE_DEVICES names them.
		sorted := slices.Clone(chosen)
		slices.SortFunc(sorted, func(a, b int) int { return cmp.Compare(slots[a].index, slots[b].index) })
		a := Assignment{Model: m.Name}
		var charged uint64
		for j, i := range sorted {
			share := uint64(float64(body) * float64(slots[i].avail-m.PerGPUBytes) / float64(room))
			if j == len(sorted)-1 {
				share = body - charged // rounding goes to the last GPU
			}
			charged += share
			need := min(share+m.PerGPUBytes, slots[i].avail)
			slots[i].avail -= need
			a.GPUs = append(a.GPUs, slots[i].index)
			a.UUIDs = append(a.UUIDs, slots[i].uuid)
			a.Bytes = append(a.Bytes, need)
			a.Split = append(a.Split, float64(share)/float64(body))
		}
		return a, true
	}
	return Assignment{}, false
}

func refusal(m ModelNeed, slots []slot, reason string, split bool) *FitError {
	e := &FitError{Model: m.Name, Need: m.Bytes, GPUs: len(slots), Reason: reason}
	for i, s := range slots {
		if i == 0 || s.avail > e.Largest {
			e.Largest, e.GPU = s.avail, s.name
			if e.GPU == "" {
				e.GPU = "GPU " + strconv.Itoa(s.index)
			}
		}
		if split {
			e.Together += s.avail
		}
	}
	return e
}
