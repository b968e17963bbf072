package gguf

import "math"

// f32ToF16 converts f to IEEE 754 binary16 bits, rounding to nearest, ties to even
// (as ggml's own conversion does). Values beyond the float16 range become ±Inf,
// values below half the smallest subnormal become ±0, and NaN stays a (quiet) NaN.
func f32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23) & 0xff
	mant := b & 0x7fffff

	if exp == 0xff { // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00 | uint16(mant>>13)
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15 // rebias
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		// Subnormal in float16 (or zero): value = m * 2^(exp-150), unit 2^-24.
		if e < -10 {
			return sign
		}
		m := mant | 0x800000
		shift := uint(14 - e)
		return sign | uint16(roundShift(m, shift))
	}
	// Normal: keep the top 10 mantissa bits; a carry out of the mantissa bumps the
	// exponent, and a carry out of the largest exponent gives Inf, both as IEEE wants.
	h := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && h&1 == 1) {
		h++
	}
	return sign | uint16(h)
}

// roundShift returns m >> shift rounded to nearest, ties to even.
func roundShift(m uint32, shift uint) uint32 {
	q := m >> shift
	rem := m & (1<<shift - 1)
	half := uint32(1) << (shift - 1)
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return q
}

// Float16 returns f as IEEE 754 binary16 bits (round to nearest, ties to even), the
// way ggml stores F16 values and the scales of quantized blocks.
func Float16(f float32) uint16 { return f32ToF16(f) }
