// A small Pterodactyl egg written for the tests in the panel's real export format (PTDL_v2):
// JSON-in-a-string config fields, Laravel rules, Wings' built-in port placeholder, an install script
// and docker images (which Keel reports as not applied).
/** A small egg in Pterodactyl's export format (PTDL_v2), as the panel writes it. */
export const testEgg = {
  _comment: 'DO NOT EDIT: FILE GENERATED AUTOMATICALLY BY PTERODACTYL PANEL - PTERODACTYL.IO',
  meta: { version: 'PTDL_v2', update_url: null },
  exported_at: '2026-11-29T12:00:00+00:00',
  name: 'Echo Game Server',
  author: 'tests@keel.invalid',
  description: 'A tiny line-based game server for tests.',
  features: ['eula'],
  docker_images: { 'Node 20': 'ghcr.io/pterodactyl/yolks:nodejs_20' },
  file_denylist: [],
  startup:
    '{{NODE_BIN}} server.cjs --port={{server.build.default.port}} --motd {{MOTD}} --max "{{MAX_PLAYERS}}"',
  config: {
    files:
      '{\r\n    "server.properties": {\r\n        "parser": "properties",\r\n        "find": {\r\n            "server-port": "{{server.build.default.port}}"\r\n        }\r\n    }\r\n}',
    startup: '{\r\n    "done": ")! For help, type "\r\n}',
    logs: '{}',
    stop: 'stop',
  },
  scripts: {
    installation: {
      script: '#!/bin/ash\r\ncd /mnt/server\r\necho installing',
      container: 'ghcr.io/pterodactyl/installers:alpine',
      entrypoint: 'ash',
    },
  },
  variables: [
    {
      name: 'Node program',
      description: 'Path to node.',
      env_variable: 'NODE_BIN',
      default_value: 'node',
      user_viewable: true,
      user_editable: false,
      rules: 'required|string|max:4096',
      field_type: 'text',
    },
    {
      name: 'Message of the day',
      description: 'Shown to players.',
      env_variable: 'MOTD',
      default_value: 'hello world',
      user_viewable: true,
      user_editable: true,
      rules: 'required|string|max:200',
      field_type: 'text',
    },
    {
      name: 'Max players',
      description: '',
      env_variable: 'MAX_PLAYERS',
      default_value: '20',
      user_viewable: true,
      user_editable: true,
      rules: 'required|integer|between:1,500',
      field_type: 'text',
    },
    {
      name: 'Difficulty',
      description: '',
      env_variable: 'DIFFICULTY',
      default_value: 'normal',
      user_viewable: true,
      user_editable: true,
      rules: 'required|string|in:peaceful,easy,normal,hard',
      field_type: 'text',
    },
  ],
};
