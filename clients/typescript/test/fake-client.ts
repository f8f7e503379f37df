// A client against a FakeSessiond of the test's own, closed when the test
// ends, recording why its session ended: what the unit tests start from.

import type { TestContext } from 'node:test';

import { type ClientOptions, MemoryStorage, type SessionEndReason, SessiondClient } from '../src/index.js';
import { type FakeOptions, FakeSessiond } from './fake-server.js';

export async function setup(t: TestContext, fake: FakeOptions = {}, options: Partial<ClientOptions> = {}) {
  const server = new FakeSessiond(fake);
  const url = await server.start();
  t.after(() => server.close());
  const storage = new MemoryStorage();
  const ended: SessionEndReason[] = [];
  const client = new SessiondClient({ baseUrl: url, storage, onSessionEnded: (r) => ended.push(r), ...options });
  return { server, url, storage, ended, client };
}
