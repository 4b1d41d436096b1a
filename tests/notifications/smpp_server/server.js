// A small SMSC for simkeep's SMPP tests, built on the server of the `smpp` package (node-smpp).
//
// Usage: node server.js '<json config>'. It listens on 127.0.0.1 (an ephemeral port unless "port" is given),
// prints {"event":"listening","port":N} and then one JSON line per thing that happens (bind, submit_sm,
// receipt sent, deliver_sm_resp, unbind, close), which the tests read. Config keys (all optional):
//   system_id, password     credentials it accepts (default "simkeep" / "secret")
//   submit_status           command_status answered to every submit_sm (default 0: accepted)
//   submit_action           "respond" (default), "drop" (close the connection, no answer) or "ignore" (never answer)
//   receipts                "none" (default), "session" (a receipt follows the submit_sm_resp on the same
//                           session) or "receiver" (receipts wait for a session bound as receiver that binds
//                           after the submit, as an SMSC hands them to whichever receiver is bound)
//   fail_destinations       destination addresses whose receipt says UNDELIV instead of DELIVRD
// A receipt answered with a non-zero deliver_sm_resp status is kept and offered again to the next receiver
// that binds, as an SMSC retries a receipt that an ESME could not take.
'use strict';

const smpp = require('smpp');

const config = Object.assign(
  {
    system_id: 'simkeep',
    password: 'secret',
    submit_status: 0,
    submit_action: 'respond',
    receipts: 'none',
    fail_destinations: [],
    port: 0,
  },
  JSON.parse(process.argv[2] || '{}'),
);

let sessionCount = 0;
let messageCount = 0;
const pending = []; // receipts waiting for a receiver

function emit(event) {
  process.stdout.write(JSON.stringify(event) + '\n');
}

function smppDate(date) {
  const p = (n) => String(n).padStart(2, '0');
  return (
    p(date.getUTCFullYear() % 100) + p(date.getUTCMonth() + 1) + p(date.getUTCDate()) +
    p(date.getUTCHours()) + p(date.getUTCMinutes())
  );
}

function makeReceipt(submit, messageId) {
  const failed = config.fail_destinations.includes(submit.destination_addr);
  const stat = failed ? 'UNDELIV' : 'DELIVRD';
  const now = smppDate(new Date());
  return {
    message_id: messageId,
    stat: stat,
    pdu: {
      source_addr_ton: submit.dest_addr_ton,
      source_addr_npi: submit.dest_addr_npi,
      source_addr: submit.destination_addr,
      dest_addr_ton: submit.source_addr_ton,
      dest_addr_npi: submit.source_addr_npi,
      destination_addr: submit.source_addr,
      esm_class: 0x04, // SMSC delivery receipt
      data_coding: 0x01,
      short_message: Buffer.from(
        `id:${messageId} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${now} done date:${now} ` +
          `stat:${stat} err:${failed ? '001' : '000'} text:`,
        'ascii',
      ),
      receipted_message_id: messageId,
      message_state: failed ? 5 : 2, // UNDELIVERABLE or DELIVERED
    },
  };
}

function offer(session, receipt) {
  emit({ event: 'receipt_sent', session: session.number, message_id: receipt.message_id, stat: receipt.stat });
  session.deliver_sm(receipt.pdu, (resp) => {
    emit({
      event: 'deliver_sm_resp',
      session: session.number,
      message_id: receipt.message_id,
      status: resp.command_status,
    });
    if (resp.command_status !== 0) {
      pending.push(receipt);
    }
  });
}

function flushPending(session) {
  while (pending.length > 0) {
    offer(session, pending.shift());
  }
}

function hex(buffers) {
  return (buffers || []).map((b) => Buffer.from(b).toString('hex')).join('');
}

const server = smpp.createServer((session) => {
  session.number = ++sessionCount;
  session.on('error', (err) => emit({ event: 'error', session: session.number, error: String(err) }));
  session.on('close', () => {
    emit({ event: 'close', session: session.number });
  });

  function onBind(pdu) {
    const accepted = pdu.system_id === config.system_id && pdu.password === config.password;
    emit({
      event: 'bind',
      session: session.number,
      command: pdu.command,
      system_id: pdu.system_id,
      system_type: pdu.system_type,
      interface_version: pdu.interface_version,
      accepted: accepted,
    });
    if (!accepted) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      session.close();
      return;
    }
    session.send(pdu.response({ system_id: 'test-smsc' }));
    if (pdu.command === 'bind_receiver') {
      flushPending(session);
    }
  }

  session.on('bind_transceiver', onBind);
  session.on('bind_transmitter', onBind);
  session.on('bind_receiver', onBind);

  session.on('submit_sm', (pdu) => {
    const message = pdu.short_message || {};
    const event = {
      event: 'submit_sm',
      session: session.number,
      service_type: pdu.service_type,
      source_addr: pdu.source_addr,
      source_addr_ton: pdu.source_addr_ton,
      source_addr_npi: pdu.source_addr_npi,
      destination_addr: pdu.destination_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi,
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
      udh: hex(message.udh),
      text: typeof message.message === 'string' ? message.message : null,
    };
    if (config.submit_action === 'drop') {
      emit(Object.assign(event, { answer: 'dropped' }));
      session.destroy();
      return;
    }
    if (config.submit_action === 'ignore') {
      emit(Object.assign(event, { answer: 'ignored' }));
      return;
    }
    if (config.submit_status !== 0) {
      emit(Object.assign(event, { answer: 'rejected', status: config.submit_status }));
      session.send(pdu.response({ command_status: config.submit_status }));
      return;
    }
    const messageId = 'smsc' + String(++messageCount).padStart(6, '0');
    emit(Object.assign(event, { answer: 'accepted', message_id: messageId }));
    session.send(pdu.response({ message_id: messageId }));
    if (!(pdu.registered_delivery & 0x03)) {
      return;
    }
    const receipt = makeReceipt(pdu, messageId);
    if (config.receipts === 'session') {
      offer(session, receipt);
    } else if (config.receipts === 'receiver') {
      pending.push(receipt);
    }
  });

  session.on('enquire_link', (pdu) => session.send(pdu.response()));
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind', session: session.number });
    session.send(pdu.response());
    session.close();
  });
});

server.listen(config.port, '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});

process.on('SIGTERM', () => process.exit(0));
process.stdin.on('end', () => process.exit(0)); // the test process went away
process.stdin.resume();
