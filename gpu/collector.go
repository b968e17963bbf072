package gpu

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// NewCollector returns a Prometheus collector that reports m's current
// Snapshot at scrape time; a scrape never reads NVML itself. Per-GPU series
// carry the labels gpu (NVML index) and uuid; a reading the GPU did not
// report (Device.Missing) is left out rather than exported as 0.
//
//	sluice_gpus                              GPUs in the snapshot
//	sluice_gpu_info{gpu,uuid,name}           1 per GPU
//	sluice_gpu_memory_total_bytes            framebuffer size
//	sluice_gpu_memory_used_bytes             framebuffer in use
//	sluice_gpu_memory_free_bytes             framebuffer free
//	sluice_gpu_utilization_ratio             kernel busy time, 0..1
//	sluice_gpu_memory_utilization_ratio      memory busy time, 0..1
//	sluice_gpu_power_watts                   power draw
//	sluice_gpu_power_limit_watts             enforced power limit
//	sluice_gpu_temperature_celsius           core temperature
//	sluice_gpu_sm_clock_hz                   SM clock
//	sluice_gpu_memory_clock_hz               memory clock
//	sluice_gpu_ecc_errors_total{type}        volatile ECC errors, type corrected|uncorrected
func NewCollector(m *Monitor) prometheus.Collector {
	per := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"gpu", "uuid"}, extra...), nil)
	}
	return &collector{
		m:           m,
		count:       prometheus.NewDesc("sluice_gpus", "Number of GPUs in the latest inventory snapshot.", nil, nil),
		info:        per("sluice_gpu_info", "GPU identity; always 1.", "name"),
		memTotal:    per("sluice_gpu_memory_total_bytes", "Total GPU framebuffer memory in bytes."),
		memUsed:     per("sluice_gpu_memory_used_bytes", "Used GPU framebuffer memory in bytes."),
		memFree:     per("sluice_gpu_memory_free_bytes", "Free GPU framebuffer memory in bytes."),
		util:        per("sluice_gpu_utilization_ratio", "Fraction of the last sample period in which a kernel ran on the GPU (0..1)."),
		memUtil:     per("sluice_gpu_memory_utilization_ratio", "Fraction of the last sample period in which GPU memory was read or written (0..1)."),
		power:       per("sluice_gpu_power_watts", "GPU power draw in watts."),
		powerLimit:  per("sluice_gpu_power_limit_watts", "Enforced GPU power limit in watts."),
		temperature: per("sluice_gpu_temperature_celsius", "GPU core temperature in degrees Celsius."),
		smClock:     per("sluice_gpu_sm_clock_hz", "Current GPU SM clock in hertz."),
		memClock:    per("sluice_gpu_memory_clock_hz", "Current GPU memory clock in hertz."),
		ecc:         per("sluice_gpu_ecc_errors_total", "ECC memory errors since the driver loaded (volatile counters).", "type"),
	}
}

type collector struct {
	m *Monitor

	count, info                    *prometheus.Desc
	memTotal, memUsed, memFree     *prometheus.Desc
	util, memUtil                  *prometheus.Desc
	power, powerLimit              *prometheus.Desc
	temperature, smClock, memClock *prometheus.Desc
	ecc                            *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.count, c.info, c.memTotal, c.memUsed, c.memFree, c.util, c.memUtil,
		c.power, c.powerLimit, c.temperature, c.smClock, c.memClock, c.ecc,
	} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.Snapshot()
	ch <- prometheus.MustNewConstMetric(c.count, prometheus.GaugeValue, float64(len(s.Devices)))
	for _, d := range s.Devices {
		gpu := strconv.Itoa(d.Index)
		gauge := func(desc *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(desc, prometheus.GaugeValue, v, append([]string{gpu, d.UUID}, extra...)...)
		}
		gauge(c.info, 1, d.Name)
		if d.Has(FieldMemory) {
			gauge(c.memTotal, float64(d.MemoryTotal))
			gauge(c.memUsed, float64(d.MemoryUsed))
			gauge(c.memFree, float64(d.MemoryFree))
		}
		if d.Has(FieldUtilization) {
			gauge(c.util, float64(d.UtilizationGPU)/100)
			gauge(c.memUtil, float64(d.UtilizationMemory)/100)
		}
		if d.Has(FieldPowerDraw) {
			gauge(c.power, d.PowerDrawW)
		}
		if d.Has(FieldPowerLimit) {
			gauge(c.powerLimit, d.PowerLimitW)
		}
		if d.Has(FieldTemperature) {
			gauge(c.temperature, float64(d.TemperatureC))
		}
		if d.Has(FieldSMClock) {
			gauge(c.smClock, float64(d.SMClockMHz)*1e6)
		}
		if d.Has(FieldMemClock) {
			gauge(c.memClock, float64(d.MemClockMHz)*1e6)
		}
		if d.Has(FieldECC) {
			ch <- prometheus.MustNewConstMetric(c.ecc, prometheus.CounterValue, float64(d.ECCCorrected), gpu, d.UUID, "corrected")
			ch <- prometheus.MustNewConstMetric(c.ecc, prometheus.CounterValue, float64(d.ECCUncorrected), gpu, d.UUID, "uncorrected")
		}
	}
}
