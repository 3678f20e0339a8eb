from studies.emotion_encoder.study import main

raise SystemExit(main())
