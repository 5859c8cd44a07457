package cuda

import "time"

// Event marks a point in the default stream, for timing device work.
type Event struct {
	ctx *Context
	h   uintptr // CUevent
}

// NewEvent creates an event (cuEventCreate, default flags: timing on).
func (c *Context) NewEvent() (*Event, error) {
	e := &Event{ctx: c}
	err := c.do(func(api *driverAPI) error {
		return c.drv.check("cuEventCreate", api.cuEventCreate(&e.h, 0))
	})
	if err != nil {
		return nil, err
	}
	return e, nil
}

// checkEvent rejects nil, destroyed and foreign events.
func (c *Context) checkEvent(call string, e *Event) error {
	if e == nil || e.h == 0 {
		return argError(call, "nil or destroyed event")
	}
	if e.ctx != c {
		return argError(call, "event belongs to another Context")
	}
	return nil
}

// Record queues e on the default stream (cuEventRecord).
func (c *Context) Record(e *Event) error {
	if err := c.checkEvent("Record", e); err != nil {
		return err
	}
	return c.do(func(api *driverAPI) error {
		return c.drv.check("cuEventRecord", api.cuEventRecord(e.h, 0))
	})
}

// Elapsed waits for end (cuEventSynchronize) and returns the device time
// between two recorded events (resolution about 0.5 µs).
func (c *Context) Elapsed(start, end *Event) (time.Duration, error) {
	if err := c.checkEvent("Elapsed", start); err != nil {
		return 0, err
	}
	if err := c.checkEvent("Elapsed", end); err != nil {
		return 0, err
	}
	var ms float32
	err := c.do(func(api *driverAPI) error {
		if err := c.drv.check("cuEventSynchronize", api.cuEventSynchronize(end.h)); err != nil {
			return err
		}
		return c.drv.check(api.elapsedName, api.cuEventElapsedTime(&ms, start.h, end.h))
	})
	return time.Duration(float64(ms) * float64(time.Millisecond)), err
}

// DestroyEvent destroys e (cuEventDestroy_v2); e is unusable after.
func (c *Context) DestroyEvent(e *Event) error {
	if err := c.checkEvent("DestroyEvent", e); err != nil {
		return err
	}
	return c.do(func(api *driverAPI) error {
		if err := c.drv.check(api.eventDestroyName, api.cuEventDestroy(e.h)); err != nil {
			return err
		}
		e.h = 0
		return nil
	})
}
