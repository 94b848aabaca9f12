import { describe, expect, it } from 'vitest';
import { refusal } from '../refusals.js';
import { failedAuthAnswer } from './auth.js';

describe('failedAuthAnswer', () => {
  it("answers a failure in its own words until the session's last, which says so and ends the session", () => {
    const invalid = refusal('authInvalid');
    expect(failedAuthAnswer('bad_credentials', invalid, 2, 3)).toEqual({ reason: 'bad_credentials', refused: invalid });
    const last = failedAuthAnswer('bad_credentials', invalid, 3, 3);
    expect(last.reason).toBe('too_many_failures');
    expect([last.refused.responseCode, last.refused.message]).toEqual([421, '4.7.0 Authentication credentials invalid; 3 failed logins, closing the session']);
  });
});
