package gpu

import (
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
)

// WriteTable writes s as a terminal table for `sluice gpus`: one row per GPU
// with index, name, memory used/total in GiB, utilization, power draw/limit
// and temperature. Readings a GPU did not report show as "-"; read errors
// follow the table. A snapshot without devices prints why.
func WriteTable(w io.Writer, s Snapshot) error {
	if len(s.Devices) == 0 {
		msg := "no GPUs"
		if s.Err != "" {
			msg += ": " + s.Err
		}
		_, err := fmt.Fprintln(w, msg)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GPU\tNAME\tMEMORY (GiB)\tUTIL\tPOWER (W)\tTEMP")
	for _, d := range s.Devices {
		name := d.Name
		if name == "" {
			name = "-"
		}
		mem, util, power, temp := "-", "-", "-", "-"
		if d.Has(FieldMemory) {
			mem = gib(d.MemoryUsed) + " / " + gib(d.MemoryTotal)
		}
		if d.Has(FieldUtilization) {
			util = strconv.FormatUint(uint64(d.UtilizationGPU), 10) + "%"
		}
		if d.Has(FieldPowerDraw) || d.Has(FieldPowerLimit) {
			draw, limit := "-", "-"
			if d.Has(FieldPowerDraw) {
				draw = strconv.FormatFloat(d.PowerDrawW, 'f', 0, 64)
			}
			if d.Has(FieldPowerLimit) {
				limit = strconv.FormatFloat(d.PowerLimitW, 'f', 0, 64)
			}
			power = draw + " / " + limit
		}
		if d.Has(FieldTemperature) {
			temp = strconv.FormatUint(uint64(d.TemperatureC), 10) + "C"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", d.Index, name, mem, util, power, temp)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range s.Devices {
		for _, e := range d.Errs {
			if _, err := fmt.Fprintf(w, "gpu %d: %s\n", d.Index, e); err != nil {
				return err
			}
		}
	}
	return nil
}
