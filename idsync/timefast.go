package idsync

import "time"

// parseTimeZ parses the commonest spelling of an RFC 3339 time,
// "2006-01-02T15:04:05Z" with an optional fraction of one to nine digits,
// to the time (in UTC) that time.Parse(time.RFC3339Nano, s) and
// Time.UnmarshalText followed by Time.UTC give for it, without their
// generic parser. ok is false for every other spelling (an offset, a
// lower-case t or z, more than nine fraction digits) and for a field out of
// its range: the caller then asks the time package, whose answer decides.
func parseTimeZ[T string | []byte](s T) (t time.Time, ok bool) {
	n := len(s)
	if n < len("2006-01-02T15:04:05Z") || s[n-1] != 'Z' ||
		s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	year, ok1 := digitsAt(s, 0, 4)
	month, ok2 := digitsAt(s, 5, 2)
	day, ok3 := digitsAt(s, 8, 2)
	hour, ok4 := digitsAt(s, 11, 2)
	minute, ok5 := digitsAt(s, 14, 2)
	sec, ok6 := digitsAt(s, 17, 2)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if n > len("2006-01-02T15:04:05Z") {
		// ".d…dZ": one to nine digits, scaled to nanoseconds.
		digits := n - len("2006-01-02T15:04:05.Z")
		if s[19] != '.' || digits < 1 || digits > 9 {
			return time.Time{}, false
		}
		f, ok := digitsAt(s, 20, digits)
		if !ok {
			return time.Time{}, false
		}
		for range 9 - digits {
			f *= 10
		}
		nsec = f
	}
	unix := daysFromCivil(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

// daysFromCivil is the number of days from 1970-01-01 to the date (month
// 1 to 12, day in range) of the proleptic Gregorian calendar (Howard
// Hinnant's days_from_civil): what time.Date computes, without its
// normalization of out-of-range fields.
func daysFromCivil(year, month, day int) int64 {
	y := int64(year)
	if month <= 2 {
		y--
	}
	era := y / 400
	if y < 0 {
		era = (y - 399) / 400
	}
	yoe := y - era*400     // [0, 399]
	mp := int64(month + 9) // months from March: January 10, February 11
	if month > 2 {
		mp = int64(month - 3)
	}
	doy := (153*mp+2)/5 + int64(day) - 1   // [0, 365]
	doe := yoe*365 + yoe/4 - yoe/100 + doy // [0, 146096]
	return era*146097 + doe - 719468
}

// digitsAt returns the decimal number s[i:i+w] spells, or false when a
// byte of it is not a digit.
func digitsAt[T string | []byte](s T, i, w int) (int, bool) {
	v := 0
	for _, c := range []byte(s[i : i+w]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// daysIn is the number of days of month (1 to 12) in year, as the time
// package counts them (proleptic Gregorian calendar, year 0 a leap year).
func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}
