/*
 * The guest agent's protocol: frames on the agent's virtio-console port, both ways.
 *
 * Plain C, shared by the agent (built for the guest, ns3_uml/data/agent/) and the host's
 * console device (ns3::VirtioConsoleDevice); ns3_uml/agent_protocol.py mirrors it and a test
 * checks that the two agree. The port is a byte stream: a frame may arrive in pieces and
 * several frames in one piece.
 *
 * A frame is a 12-byte header, little-endian, then `length` payload bytes:
 *   u32 length   payload bytes, at most AGENT_MAX_PAYLOAD
 *   u16 type     AGENT_* below
 *   u16 reserved 0
 *   u32 id       the command a frame is about (chosen by the host, non-zero); 0: none
 *
 * Host to guest:
 *   RUN       payload: u32 flags (0), then the shell command (UTF-8, no NUL). The agent
 *             runs `/bin/sh -c COMMAND` in a session of its own, stdin /dev/null, stdout
 *             and stderr to pipes, in the guest's work directory; answers STARTED, or
 *             ERROR if it could not start it.
 *   SIGNAL    payload: u32 signal number, sent to the command's process group.
 *   POWEROFF  no payload: kill everything, flush the work directory, power off.
 * Guest to host:
 *   READY     payload: u64 uptime ns. Set-up is done; commands may come.
 *   STARTED   payload: u64 start (uptime ns), i32 pid.
 *   STDOUT, STDERR  payload: output bytes, in order, every piece before the EXIT.
 *   EXIT      payload: u64 start, u64 end (uptime ns), i32 wait status (as waitpid's).
 *             Sent once the command's process has exited and its pipes hold nothing more
 *             (output written later by what it left running is not read).
 *   ERROR     payload: a message (UTF-8). With an id: that RUN failed (no EXIT follows);
 *             without: the agent refused a frame.
 * The agent keeps no timers: while nothing is asked of it, it adds no events.
 */
#ifndef NS3_UML_AGENT_PROTOCOL_H
#define NS3_UML_AGENT_PROTOCOL_H

#define AGENT_HEADER_SIZE 12
#define AGENT_MAX_PAYLOAD 65536

/* The port's name (/sys/class/virtio-ports/<port>/name), by which the guest's init finds
 * it, and the agent's default port: Linux names ports vport<virtio index>p<port id>, so this
 * is the agent's port only when the console is the guest's first virtio device. */
#define AGENT_PORT_NAME "org.ns3-uml.agent"
#define AGENT_PORT_DEVICE "/dev/vport0p0"

/* Host to guest. */
#define AGENT_RUN 1
#define AGENT_SIGNAL 2
#define AGENT_POWEROFF 3

/* Guest to host. */
#define AGENT_READY 16
#define AGENT_STARTED 17
#define AGENT_STDOUT 18
#define AGENT_STDERR 19
#define AGENT_EXIT 20
#define AGENT_ERROR 21

#endif
