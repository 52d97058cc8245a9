// Load shapes, one per scenario (quickpizza's lib/load-options.js pattern). Rates are batches
// per second (FILES images each) in the open model: producers arrive whether or not the stack
// keeps up, so a slow stack shows as latency and queue depth, not as a politely lower rate.
// RATE scales every shape (default 1 batch/s, the "average" load of one small site); DURATION
// sets the hold of average and soak.
const RATE = parseFloat(__ENV.RATE || '1');
const HOLD = __ENV.DURATION;

function arrival(stages, maxVUs) {
  return {
    executor: 'ramping-arrival-rate',
    startRate: 0,
    // Rates below 1/s: k6 wants integer targets, so count arrivals per 10 s.
    timeUnit: '10s',
    stages: stages.map(([duration, rate]) => ({ duration, target: Math.round(rate * RATE * 10) })),
    preAllocatedVUs: Math.max(2, Math.ceil(maxVUs * RATE)),
    // Headroom for a slow stack: each VU holds a batch until it completes.
    maxVUs: Math.max(8, Math.ceil(maxVUs * RATE * 4)),
  };
}

// A few batches one after another: does it work at all?
export const smoke = { executor: 'shared-iterations', vus: 1, iterations: 5, maxDuration: '2m' };

// The expected load, held.
export const average = arrival([['30s', 1], [HOLD || '4m', 1], ['30s', 0]], 4);

// Well above it, in steps: where does latency bend?
export const stress = arrival(
  [['30s', 1], ['1m', 1], ['30s', 3], ['2m', 3], ['30s', 5], ['2m', 5], ['1m', 0]],
  20,
);

// A sudden burst from a quiet baseline, and the recovery.
export const spike = arrival(
  [['20s', 0.2], ['30s', 0.2], ['10s', 8], ['30s', 8], ['10s', 0.2], ['1m', 0.2]],
  40,
);

// The average load for a long time (memory and queue growth; see soak.sh).
export const soak = arrival([['30s', 1], [HOLD || '10m', 1], ['30s', 0]], 4);
